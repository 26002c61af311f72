"""``dynwf run`` as a function: supervise engine processes through real crashes, then report.

The supervisor never opens the journal while an engine process runs. It starts a
child engine (``dynwf.run._child``), waits for it, and reads the markers file: when
the child died by SIGKILL at one of the run's crash points, the point is struck off
and a fresh child recovers the instance from the journal, exactly as a restarted
``dynwf dev`` would. When the last child is done, the report is read from the
journal (read-only), so the execution counts in it are the callbacks that reported
beginning (their code up to the first suspension point ran), across every process.
"""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dynwf.client import JournalStateClient
from dynwf.config import ProjectConfig, WorkflowConfig, load_config
from dynwf.dispatch import scope_of
from dynwf.engine import parse_duration
from dynwf.errors import DynwfError, ValidationError
from dynwf.journal import Journal
from dynwf.project._project import state_dir_for
from dynwf.run._spec import RunSpec, StepPoint, parse_point
from dynwf.server import find_running

EXIT_COMPLETE, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3


class RunError(DynwfError):
    """A run that could not be carried out (the engine process failed, the state is busy)."""


@dataclass(slots=True)
class RunReport:
    """What happened to the one instance of a ``dynwf run``.

    ``as_json()`` (what ``dynwf run --json`` prints; stable)::

        {"instance": str, "workflow": str, "tenant": <metadata>, "scope": str,
         "status": str, "output": any, "error": {"name", "message"} | null,
         "waiting": null | {"kind": "event", "step", "type", "deadline"}
                         | {"kind": "sleep" | "retry", "step", "until"} | {"kind": "paused"},
         "parked": str | null,                     # the tenant code failed to load
         "processes": int,                          # engine processes the run used
         "markers": [{"kind": "crash", "step", "count", "when", "attempt", "process", "pid"}
                     | {"kind": "evict", "step", "count", "workers", "process"}],
         "unreached": [str],                        # crash/evict points never reached
         "warnings": [str],                         # replay divergences, one per line
         "steps": [{"name", "type", "executions", "unreported", "replays", "attempts",
                    "failed_attempts", "success", "output", "error",
                    "attempt_errors": [str], "markers": [str]}],
         "exit_code": int, "seconds": float}

    ``executions``: how many times the step's callback began, in any process, as the
    isolate running it reported (after the callback's code up to its first suspension
    point ran); ``unreported``: attempts the engine journaled as begun without that
    report (the process died, or the callback still blocked at its timeout), so the
    attempt facts number ``executions + unreported`` (mocked ones aside);
    ``replays``: how many later passes took its result from the journal instead.

    A replay divergence (``warnings``) makes the exit code 1 whatever the status: the
    workflow's code outside steps is not deterministic, so a real replay would run
    steps again. ``allow_divergence`` (``--allow-divergence``) keeps the status's code.
    """

    instance: str
    workflow: str
    tenant: Any
    scope: str
    status: str
    output: Any
    error: dict[str, str] | None
    waiting: dict[str, Any] | None
    parked: str | None
    processes: int
    markers: list[dict[str, Any]]
    unreached: list[str]
    warnings: list[str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    allow_divergence: bool = False

    @property
    def exit_code(self) -> int:
        if self.warnings and not self.allow_divergence:
            return EXIT_FAILED
        if self.status == "complete":
            return EXIT_COMPLETE
        if self.parked is None and self.waiting is not None:
            return EXIT_WAITING
        return EXIT_FAILED

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["allow_divergence"]  # how the exit code was chosen, not what happened
        return {**data, "exit_code": self.exit_code}


def pick_workflow(config: ProjectConfig, name: str | None) -> WorkflowConfig:
    """The workflow named ``name`` (its name or binding), or the project's only one."""
    if name is None:
        if len(config.workflows) == 1:
            return config.workflows[0]
        names = ", ".join(w.name for w in config.workflows) or "none"
        raise ValidationError(
            f"{config.path}: the project has {len(config.workflows)} workflows ({names}); "
            "choose one with --workflow NAME"
        )
    for wf in config.workflows:
        if name in (wf.name, wf.binding):
            return wf
    names = ", ".join(w.name for w in config.workflows) or "none"
    raise ValidationError(f"--workflow {name!r}: no such workflow in {config.path} (it has: {names})")


def _read_markers(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_workflow(
    config: str | Path = ".",
    *,
    tenant: str,
    workflow: str | None = None,
    params: Any = None,
    id: str | None = None,
    metadata: Any = None,
    crash_at: list[str] | tuple[str, ...] = (),
    evict_at: list[str] | tuple[str, ...] = (),
    hibernate_every_step: bool = False,
    skip_sleeps: bool = False,
    skip_retry_delays: bool = False,
    max_wait: str | int = "30 seconds",
    persist_to: str | Path | None = None,
    inline: bool = False,
    accept_data_loss: bool = False,
    allow_divergence: bool = False,
    on_process: Callable[[int, list[dict[str, Any]]], None] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> RunReport:
    """Create one instance for ``tenant`` through the dispatcher's wrapped binding, drive it
    (through the crash and eviction points given) and report what happened.

    ``on_process(n, markers)`` is called before engine process ``n`` starts, with the
    markers so far (for progress output). ``accept_data_loss`` opens a journal that lacks
    facts its last writer committed (see ``dynwf.journal``) instead of refusing it.
    ``allow_divergence``: a replay divergence does not make the report's exit code 1
    (see ``RunReport``). ``on_progress(event)`` is called while an engine process runs,
    for each of: ``{"kind": "start", "step", "count", "attempt"}`` (an attempt's
    callback is about to run), ``{"kind": "end", "step", "attempt", "ok", "ms",
    "error"}`` and ``{"kind": "waiting", "on": [{"step", "type", "until", "event"}],
    "now"}`` (times in epoch ms). Only the run's own instance runs: other unfinished
    instances in the same state are left for ``dynwf dev``. Raises ``ValidationError``
    for bad input, ``RunError`` when the run cannot be carried out, ``ConfigError`` for
    a bad config.
    """
    crashes = [parse_point(p, option="--crash-at", allow_when=True) for p in crash_at]
    evictions = [parse_point(p, option="--evict-at", allow_when=False) for p in evict_at]
    wait_ms = parse_duration(max_wait) if isinstance(max_wait, str) else int(max_wait)
    cfg = load_config(config)
    wf = pick_workflow(cfg, workflow)
    state_dir = state_dir_for(cfg.path.parent, persist_to)
    url = find_running(state_dir)
    if url is not None:
        raise RunError(
            f"dynwf dev is serving this project's state ({state_dir}) at {url}: stop it "
            "(Ctrl-C) before `dynwf run`, or give the run its own state with --persist-to DIR"
        )
    _check_journal(state_dir / "journal.duckdb", accept_data_loss)
    started = time.monotonic()
    meta = metadata if metadata is not None else {"tenantId": tenant}
    instance = id or str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="dynwf-run-") as tmp:
        work = Path(tmp)
        spec = RunSpec(
            config=str(cfg.path),
            persist_to=str(state_dir),
            workflow=wf.name,
            binding=wf.binding,
            metadata=meta,
            id=instance,
            params=params,
            crashes=crashes,
            evictions=evictions,
            hibernate_every_step=hibernate_every_step,
            skip_sleeps=skip_sleeps,
            skip_retry_delays=skip_retry_delays,
            max_wait_ms=wait_ms,
            inline=inline,
            markers_file=str(work / "markers.jsonl"),
            result_file=str(work / "result.json"),
            supervisor=os.getpid(),
            accept_data_loss=accept_data_loss,
        )
        result = _supervise(spec, work, on_process, on_progress)
        markers = _read_markers(work / "markers.jsonl")
    report = _report(spec, state_dir, result, markers, crashes, evictions)
    report.seconds = round(time.monotonic() - started, 3)
    report.allow_divergence = allow_divergence
    return report


def _check_journal(path: Path, accept_data_loss: bool) -> None:
    """Refuse at once a journal another process holds, or one damaged or missing data,
    before an engine process is started for it (the child would refuse it too, later)."""
    if not path.exists():
        return
    Journal(path, read_only=True, accept_data_loss=accept_data_loss).close()


def _stderr_fd() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # replaced by a test runner's buffer
        return 2


def _wait_reporting(child: subprocess.Popen[bytes], read_fd: int,
                    on_progress: Callable[[dict[str, Any]], None] | None) -> int:
    """Wait for ``child``, passing each progress line it writes to ``on_progress``."""
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(read_fd, selectors.EVENT_READ)
        open_ = True
        while True:
            rc = child.poll()
            if open_ and sel.select(timeout=0.05 if rc is None else 0):
                chunk = os.read(read_fd, 65536)
                if chunk:
                    *done, buffer = (buffer + chunk).split(b"\n")
                    for line in done:
                        if line.strip() and on_progress is not None:
                            on_progress(json.loads(line))
                    continue
                open_ = False  # every writer closed the pipe
            if rc is not None:
                return rc
            if not open_:
                return child.wait()


def _supervise(
    spec: RunSpec, work: Path, on_process: Callable[[int, list[dict[str, Any]]], None] | None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    markers_path, result_path = Path(spec.markers_file), Path(spec.result_file)
    seen = 0
    while True:
        if on_process is not None:
            on_process(spec.process, _read_markers(markers_path))
        spec_path = work / f"spec-{spec.process}.json"
        read_fd, write_fd = os.pipe()
        spec.progress_fd = write_fd
        spec.dump(spec_path)
        result_path.unlink(missing_ok=True)
        try:
            # The child's stdout is our stderr: tenant print() output is not the report.
            child = subprocess.Popen([sys.executable, "-m", "dynwf.run._child", str(spec_path)],
                                     stdout=_stderr_fd(), pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        try:
            rc = _wait_reporting(child, read_fd, on_progress)
        except KeyboardInterrupt:
            # The child is in our process group and got the Ctrl-C too; let it stop.
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
        finally:
            os.close(read_fd)
        markers = _read_markers(markers_path)
        new, seen = markers[seen:], len(markers)
        crash = next((m for m in new if m["kind"] == "crash"), None)
        for m in new:
            if m["kind"] == "evict":
                spec.evictions = [
                    p for p in spec.evictions if (p.name, p.count) != (m["step"], m["count"])
                ]
        if rc == -signal.SIGKILL and crash is not None:
            point = StepPoint(crash["step"], crash["count"], crash["when"])
            spec.crashes = [p for p in spec.crashes if p != point]
            spec.create = False  # the instance is in the journal; the next engine recovers it
            spec.process += 1
            continue
        if result_path.exists():
            result: dict[str, Any] = json.loads(result_path.read_text())
            if "error" in result:
                raise RunError(result["error"])
            return result
        how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
        where = (
            "the instance may not have been created (`dynwf inspect` shows what the journal holds)"
            if spec.create
            else f"instance {spec.id!r} is in the journal: run `dynwf inspect {spec.id}` to see it"
        )
        raise RunError(
            f"engine process {spec.process} ended with {how} outside any crash point "
            f"(killed from outside, or out of memory?); {where}"
        )


def _report(
    spec: RunSpec,
    state_dir: Path,
    result: dict[str, Any],
    markers: list[dict[str, Any]],
    crashes: list[StepPoint],
    evictions: list[StepPoint],
) -> RunReport:
    scope = scope_of(spec.metadata)
    client = JournalStateClient(state_dir / "journal.duckdb")
    detail = asyncio.run(client.describe(spec.id, workflow=spec.workflow, tenant=scope))
    fired_crash = {(m["step"], m["count"], m["when"]) for m in markers if m["kind"] == "crash"}
    fired_evict = {(m["step"], m["count"]) for m in markers if m["kind"] == "evict"}
    unreached = [p.label() for p in crashes if (p.name, p.count, p.when) not in fired_crash]
    unreached += [p.label(with_when=False) for p in evictions if (p.name, p.count) not in fired_evict]
    steps = []
    for s in detail["steps"]:
        tags = [
            f"{m['kind']}{':' + m['when'] if m['kind'] == 'crash' else ''} (process {m['process']})"
            for m in markers
            if f"{m['step']}-{m['count']}" == s["name"]
        ]
        attempts = s.get("attempts", [])
        steps.append(
            {
                "name": s["name"],
                "type": s["type"],
                "executions": s["executions"],
                "unreported": s.get("unreported", 0),
                "replays": s["replays"],
                "attempts": len(attempts),
                "failed_attempts": sum(1 for a in attempts if a["success"] is False),
                "success": s.get("success", s.get("finished")),
                "output": s.get("output"),
                "error": s.get("error") if s.get("success") is False or s["type"] != "step" else None,
                "attempt_errors": [
                    f"{a['error']['name']}: {a['error']['message']}"
                    for a in attempts
                    if a.get("error")
                ],
                "markers": tags,
            }
        )
    return RunReport(
        instance=spec.id,
        workflow=spec.workflow,
        tenant=spec.metadata,
        scope=scope,
        status=detail["status"],
        output=detail["output"],
        error=detail["error"],
        waiting=result.get("waiting"),
        parked=result.get("parked"),
        processes=spec.process,
        markers=markers,
        unreached=unreached,
        warnings=list(detail.get("warnings", [])),
        steps=steps,
    )
