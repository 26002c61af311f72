"""One engine process of a ``dynwf run``: ``python -m dynwf.run._child SPEC.json``.

It loads the project, installs the run's fault points, creates the instance (first
process only) or finds it (a process started after a crash, whose engine recovered
it from the journal), and drives it until it ends or waits on something it may not
skip. A crash point appends a marker line to the markers file, fsyncs it, and kills
this process with SIGKILL: the parent sees the marker and starts the next process.
The outcome goes to the result file as one JSON object.

It dies with its supervisor (``PR_SET_PDEATHSIG`` on Linux): an engine left running
on the journal after ``dynwf run`` was killed would hold it locked, invisibly.

Only the run's own instance is recovered and run: every other unfinished instance
of the journal is left exactly as it is, for ``dynwf dev`` to carry on. Progress
(an attempt starts, an attempt ends, the instance waits) goes to the parent as JSON
lines on the pipe ``spec.progress_fd``; this process's stdout is the parent's stderr,
so tenant ``print()`` output never mixes into a ``--json`` report.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from dynwf._lifetime import die_with_parent
from dynwf.dispatch import scope_of
from dynwf.dispatch._api import show_deprecations, tenant_binding
from dynwf.engine import (
    FINISHED,
    Faults,
    InstanceState,
    Status,
    StatusChange,
    StepEvent,
    StepState,
    TimeControl,
)
from dynwf.errors import DynwfError
from dynwf.project import Project
from dynwf.run._spec import RunSpec


class _Markers:
    def __init__(self, path: str, process: int) -> None:
        self.path, self.process = path, process

    def write(self, **marker: Any) -> None:
        marker["process"] = self.process
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(marker) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _Progress:
    """JSON lines to the parent, if it asked for them; a parent gone away is ignored."""

    def __init__(self, fd: int) -> None:
        self.out = os.fdopen(fd, "w", buffering=1, encoding="utf-8") if fd >= 0 else None

    def write(self, **event: Any) -> None:
        if self.out is None:
            return
        try:
            self.out.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
        except (OSError, ValueError):
            self.out = None


class _RunFaults(Faults):
    """Fires the run's crash, eviction and hibernation points for its one instance."""

    def __init__(
        self, project: Project, spec: RunSpec, scope: str, markers: _Markers, progress: _Progress
    ) -> None:
        self.project, self.spec, self.scope, self.markers = project, spec, scope, markers
        self.progress = progress
        self.crashes = list(spec.crashes)
        self.evictions = list(spec.evictions)
        self._tasks: set[asyncio.Task[Any]] = set()

    def _ours(self, st: InstanceState) -> bool:
        return (
            st.workflow == self.spec.workflow and st.scope == self.scope and st.id == self.spec.id
        )

    def _crash(self, st: InstanceState, step: StepState, when: str) -> None:
        if not self._ours(st):
            return
        for point in self.crashes:
            if (point.name, point.count, point.when) == (step.name, step.count, when):
                attempt = len(step.attempts)
                # What was recorded before the point is journaled, then the kill: "during"
                # with the attempt fact of a callback that really began (its isolate said
                # so, after its code up to its first suspension point ran), "before" with
                # that too but not the result, "after" with the result.
                self.project.engine.commit_now()
                self.markers.write(
                    kind="crash",
                    step=step.name,
                    count=step.count,
                    when=when,
                    attempt=attempt,
                    pid=os.getpid(),
                )
                _die()  # at once: not one more message from the isolate is taken
                return

    def attempt_started(self, st: InstanceState, step: StepState) -> None:
        if self._ours(st):
            self.progress.write(
                kind="start", step=step.name, count=step.count, attempt=len(step.attempts)
            )
        self._crash(st, step, "during")

    def before_result(self, st: InstanceState, step: StepState) -> None:
        self._crash(st, step, "before")

    def after_result(self, st: InstanceState, step: StepState) -> None:
        self._crash(st, step, "after")
        if not self._ours(st):
            return
        for point in list(self.evictions):
            if (point.name, point.count) == (step.name, step.count):
                self.evictions.remove(point)
                workers = self._evict(st)
                self.markers.write(kind="evict", step=step.name, count=step.count, workers=workers)
        if self.spec.hibernate_every_step:
            self.project.engine.interrupt(st.uid)

    def _evict(self, st: InstanceState) -> list[str]:
        """Evict the workers running this instance once the pass ends at the next step
        boundary (a step already started would otherwise be cut off)."""
        serving = [
            (loader, id)
            for loader in self.project.loaders.values()
            for id in loader.serving(st.uid)
        ]

        def evict() -> None:
            for loader, id in serving:
                task = asyncio.get_running_loop().create_task(loader.evict(id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        self.project.engine.after_pass(st.uid, evict)
        return [id for _, id in serving]


def _waiting_on(st: InstanceState, now: int, spec: RunSpec) -> dict[str, Any] | None:
    """What a waiting instance waits on, if the run must stop for it; None to keep waiting."""
    if st.status is Status.PAUSED:
        return {"kind": "paused"}
    if st.status is not Status.WAITING:
        return None
    for s in st.steps.values():
        if s.done:
            continue
        if s.kind == "waitForEvent":
            return {"kind": "event", "step": s.name, "type": s.event_type, "deadline": s.wake_at}
        if s.wake_at is not None and s.wake_at - now > spec.max_wait_ms:
            kind = "sleep" if s.kind == "sleep" else "retry"
            return {"kind": kind, "step": s.name, "until": s.wake_at}
    return None


async def drive(spec: RunSpec) -> dict[str, Any]:
    markers = _Markers(spec.markers_file, spec.process)
    project = Project.load(
        spec.config,
        persist_to=spec.persist_to,
        isolation="inline" if spec.inline else "process",
        accept_data_loss=spec.accept_data_loss,
        time=TimeControl(skip_sleeps=spec.skip_sleeps, skip_retry_delays=spec.skip_retry_delays),
    )
    scope = scope_of(spec.metadata)
    progress = _Progress(spec.progress_fd)
    faults = project.engine.faults = _RunFaults(project, spec, scope, markers, progress)
    project.engine.drives = faults._ours  # other unfinished instances are left as they are
    parked: list[str] = []

    def listen(kind: str, payload: Any) -> None:
        if kind == "parked":
            st, reason = payload
            if faults._ours(st):
                parked.append(reason)
        elif kind == "step":
            e: StepEvent = payload
            if (e.workflow, e.scope, e.instance) == (spec.workflow, scope, spec.id):
                progress.write(
                    kind="end",
                    step=e.step,
                    attempt=e.attempt,
                    ok=e.ok,
                    ms=e.duration_ms,
                    error=e.error,
                )
        elif kind == "status":
            change: StatusChange = payload
            st = change.instance
            if faults._ours(st) and change.new == "waiting" and not st.parked:
                pending = [
                    {"step": s.name, "type": s.kind, "until": s.wake_at, "event": s.event_type}
                    for s in st.steps.values()
                    if not s.done
                ]
                progress.write(kind="waiting", on=pending, now=project.engine.clock.now_ms())

    project.engine.listeners.append(listen)
    await project.start()
    try:
        if spec.create:
            binding = tenant_binding(project.env, spec.metadata, spec.binding)
            await binding.create({"id": spec.id, "params": spec.params})
        st = project.engine.lookup(spec.workflow, scope, spec.id)
        while True:
            if st.status in FINISHED:
                return {"status": st.status.value}
            if parked:
                return {"status": st.status.value, "parked": parked[-1]}
            waiting = _waiting_on(st, project.engine.clock.now_ms(), spec)
            if waiting is not None:
                return {"status": st.status.value, "waiting": waiting}
            if project.engine.fatal is not None:
                raise project.engine.fatal  # a failed commit stopped the engine
            await asyncio.sleep(0.01)
    finally:
        await project.stop()


def main(argv: list[str]) -> int:
    spec = RunSpec.load(Path(argv[0]))
    show_deprecations()
    if spec.supervisor:
        die_with_parent(spec.supervisor)
    try:
        result = asyncio.run(drive(spec))
    except DynwfError as exc:
        result = {"error": str(exc)}
    Path(spec.result_file).write_text(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
