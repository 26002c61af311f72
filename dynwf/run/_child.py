"""One engine process of a ``dynwf run``: ``python -m dynwf.run._child SPEC.json``.

It loads the project, installs the run's fault points, creates the instance (first
process only) or finds it (a process started after a crash, whose engine recovered
it from the journal), and drives it until it ends or waits on something it may not
skip. A crash point appends a marker line to the markers file, fsyncs it, and kills
this process with SIGKILL: the parent sees the marker and starts the next process.
The outcome goes to the result file as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from dynwf.dispatch import scope_of, wrap_workflow_binding
from dynwf.engine import Faults, InstanceState, StepState, TimeControl
from dynwf.engine._states import FINISHED, Status
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


class _RunFaults(Faults):
    """Fires the run's crash, eviction and hibernation points for its one instance."""

    def __init__(self, project: Project, spec: RunSpec, scope: str, markers: _Markers) -> None:
        self.project, self.spec, self.scope, self.markers = project, spec, scope, markers
        self.crashes = list(spec.crashes)
        self.evictions = list(spec.evictions)
        self._tasks: set[asyncio.Task[Any]] = set()

    def _ours(self, st: InstanceState) -> bool:
        return st.workflow == self.spec.workflow and st.scope == self.scope and st.id == self.spec.id

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
                self.markers.write(kind="crash", step=step.name, count=step.count, when=when,
                                   attempt=attempt, pid=os.getpid())
                _die()  # at once: not one more message from the isolate is taken
                return

    def attempt_started(self, st: InstanceState, step: StepState) -> None:
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
                self.markers.write(kind="evict", step=step.name, count=step.count,
                                   workers=workers)
        if self.spec.hibernate_every_step:
            self.project.engine.interrupt(st.uid)

    def _evict(self, st: InstanceState) -> list[str]:
        """Evict the workers running this instance once the pass ends at the next step
        boundary (a step already started would otherwise be cut off)."""
        serving = [
            (loader, id) for loader in self.project.loaders.values() for id in loader.serving(st.uid)
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
        time=TimeControl(skip_sleeps=spec.skip_sleeps, skip_retry_delays=spec.skip_retry_delays),
    )
    scope = scope_of(spec.metadata)
    faults = project.engine.faults = _RunFaults(project, spec, scope, markers)
    parked: list[str] = []

    def listen(kind: str, payload: Any) -> None:
        if kind == "parked":
            st, reason = payload
            if faults._ours(st):
                parked.append(reason)

    project.engine.listeners.append(listen)
    await project.start()
    try:
        if spec.create:
            binding = wrap_workflow_binding(spec.metadata, binding_name=spec.binding, env=project.env)
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
            await asyncio.sleep(0.01)
    finally:
        await project.stop()


def main(argv: list[str]) -> int:
    spec = RunSpec.load(Path(argv[0]))
    try:
        result = asyncio.run(drive(spec))
    except DynwfError as exc:
        result = {"error": str(exc)}
    Path(spec.result_file).write_text(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
