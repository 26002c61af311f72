"""An instance's state as a fold over its journal facts.

The engine never mutates an instance directly: it makes a fact, applies it here
and hands it to the journal. Recovery applies the same facts in the same order,
so the live state and the recovered state cannot drift apart.

Fact kinds (``data`` is a JSON object):
    created      {workflow, scope, id, params,        retention: ms a finished instance is
                  retention?: {successRetention?,     kept (complete; errored or terminated)
                               errorRetention?},      before it expires; schedule: the cron
                  schedule?: {cron, scheduledTime}}   firing that created it
    status       {status, output?, error?}
    attempt      {n, config?, name?, count?,          a callback began (its code up to
                  mocked?, inferred?}                 its first suspension point ran, as
                                                      its process reported); inferred: the
                                                      engine concluded it began without a
                                                      report (its process died, or it was
                                                      still blocking at its timeout);
                                                      mocked: a test modifier answered
    attempt_end  {n, ok, output?, error?, final?, retry_at?}
    sleep        {name, count, ms, until}            sleep started
    sleep_done   {}
    wait         {name, count, type, deadline}        wait_for_event started
    wait_done    {event?, output?, error?}            event seq consumed, or timeout
    event        {type, payload}                      buffered event (its seq is its id)
    resume       {shift}                              pending timers move by shift ms
    restart      {keep?: [step keys]}                 wipe steps (but those in keep: a
                                                      restart from a step), events, timers
    pass         {replayed: [step keys]}              a run pass ended
    warning      {message, missing, ran}              replay divergence
    parked       {reason}                             its code did not load; it waits
                                                      (until the next status fact)
    deleted      {expired?}                           the instance was deleted: listings,
                                                      lookups and recovery skip it; expired:
                                                      past its retention, and the other
                                                      facts of it were then removed
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dynwf.engine._states import FINISHED, Status

if TYPE_CHECKING:
    from dynwf.journal import Row  # at run time an isolate imports this module, never DuckDB

StepKind = Literal["do", "sleep", "waitForEvent"]
ErrorDict = dict[str, str]

INTERNAL_ERROR: ErrorDict = {
    "name": "WorkflowInternalError",
    "message": "Attempt failed due to internal workflows error",
}


def step_key(kind: StepKind, name: str, count: int, ms: int | None = None) -> str:
    if kind == "sleep":
        return f"sleep:{name}:{ms}#{count}"
    return f"{kind}:{name}#{count}"


@dataclass(slots=True)
class Attempt:
    n: int
    start: int
    end: int | None = None
    ok: bool | None = None
    error: ErrorDict | None = None
    mocked: bool = False  # a test modifier answered; the callback did not run
    inferred: bool = False  # journaled as begun without the callback's own report


@dataclass(slots=True)
class StepState:
    key: str
    kind: StepKind
    name: str
    count: int
    start: int
    config: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    done: bool = False
    end: int | None = None
    output: Any = None
    error: ErrorDict | None = None
    wake_at: int | None = None  # sleep end, wait deadline, or next retry
    event_type: str | None = None
    duration_ms: int | None = None
    replays: int = 0

    @property
    def executions(self) -> int:
        """How many times the callback reported that it began, in any process."""
        return sum(1 for a in self.attempts if not a.mocked and not a.inferred)

    @property
    def unreported(self) -> int:
        """Attempts journaled as begun that never said so: their process died, or they
        blocked past their timeout, before the report (so they may have begun)."""
        return sum(1 for a in self.attempts if a.inferred)

    @property
    def open_attempt(self) -> Attempt | None:
        if self.attempts and self.attempts[-1].end is None:
            return self.attempts[-1]
        return None


@dataclass(slots=True)
class BufferedEvent:
    seq: int
    type: str
    payload: Any
    ts: int
    consumed: bool = False


@dataclass(slots=True)
class Warning_:
    ts: int
    message: str
    missing: list[str]
    ran: list[str]


class InstanceState:
    """Everything known about one instance, rebuilt from its facts."""

    __slots__ = (
        "created",
        "deleted",
        "do_count",
        "ended",
        "error",
        "events",
        "id",
        "output",
        "params",
        "parked",
        "passes",
        "paused_at",
        "retention",
        "schedule",
        "scope",
        "started",
        "status",
        "steps",
        "uid",
        "warnings",
        "workflow",
    )

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.workflow = ""
        self.scope = ""
        self.id = ""
        self.params: Any = None
        self.schedule: dict[str, Any] | None = None  # {"cron", "scheduledTime"}: a cron made it
        self.created = 0
        self.deleted = False
        self.retention: dict[str, int] | None = None
        self.status = Status.UNKNOWN  # until its first status fact
        self.output: Any = None
        self.error: ErrorDict | None = None
        self.started: int | None = None
        self.ended: int | None = None
        self.paused_at: int | None = None
        self.steps: dict[str, StepState] = {}
        self.events: list[BufferedEvent] = []
        self.warnings: list[Warning_] = []
        self.parked: str | None = None  # why its last pass could not load its code
        self.passes = 0
        self.do_count = 0

    def apply(self, seq: int, ts: int, kind: str, step: str | None, data: dict[str, Any]) -> None:
        _APPLY[kind](self, seq, ts, step, data)

    def oldest_event(self, type_: str) -> BufferedEvent | None:
        for ev in self.events:
            if not ev.consumed and ev.type == type_:
                return ev
        return None

    def pending_wake(self) -> int | None:
        """Earliest timer among unfinished steps (sleep end, retry, wait deadline)."""
        times = [s.wake_at for s in self.steps.values() if not s.done and s.wake_at is not None]
        return min(times) if times else None

    @property
    def expires_at(self) -> int | None:
        """When a finished instance with a retention expires (ms since the epoch)."""
        if self.retention is None or self.ended is None:
            return None
        if self.status is Status.COMPLETE:
            keep = self.retention.get("successRetention")
        elif self.status in (Status.ERRORED, Status.TERMINATED):
            keep = self.retention.get("errorRetention")
        else:
            return None
        return None if keep is None else self.ended + keep

    def steps_from(self, name: str, count: int = 1, kind: str | None = None) -> list[str] | None:
        """The keys of the ``count``-th step named ``name`` (of ``kind``, if given) and of
        every step journaled after it, in journal order; None if there is no such step."""
        seen = 0
        keys = list(self.steps)
        for i, key in enumerate(keys):
            s = self.steps[key]
            if s.name == name and (kind is None or s.kind == kind):
                seen += 1
                if seen == count:
                    return keys[i:]
        return None

    def waiting_types(self) -> set[str]:
        return {
            s.event_type
            for s in self.steps.values()
            if s.kind == "waitForEvent" and not s.done and s.event_type
        }


def _created(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    st.workflow, st.scope, st.id, st.params = d["workflow"], d["scope"], d["id"], d["params"]
    st.schedule = d.get("schedule")
    st.created = ts
    st.retention = d.get("retention")


def _status(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    new = Status(d["status"])
    if new is Status.RUNNING and st.started is None:
        st.started = ts
    if new is Status.PAUSED:
        st.paused_at = ts
    st.status = new
    st.parked = None
    if new in FINISHED:
        st.ended = ts
        st.output = d.get("output")
        st.error = d.get("error")


def _attempt(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    assert step is not None
    s = st.steps.get(step)
    if s is None:
        s = st.steps[step] = StepState(step, "do", d["name"], d["count"], ts)
        st.do_count += 1
    if "config" in d:
        s.config = d["config"]
    s.attempts.append(
        Attempt(d["n"], ts, mocked=bool(d.get("mocked")), inferred=bool(d.get("inferred")))
    )
    s.wake_at = None


def _attempt_end(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    assert step is not None
    s = st.steps[step]
    a = s.attempts[-1]
    a.end, a.ok, a.error = ts, d["ok"], d.get("error")
    if d["ok"]:
        s.done, s.end, s.output = True, ts, d.get("output")
    elif d.get("final"):
        s.done, s.end, s.error = True, ts, d.get("error")
    else:
        s.wake_at = d.get("retry_at")


def _sleep(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    assert step is not None
    s = st.steps[step] = StepState(step, "sleep", d["name"], d["count"], ts)
    s.duration_ms, s.wake_at = d["ms"], d["until"]


def _sleep_done(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    assert step is not None
    s = st.steps[step]
    s.done, s.end = True, ts


def _wait(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    assert step is not None
    s = st.steps[step] = StepState(step, "waitForEvent", d["name"], d["count"], ts)
    s.event_type, s.wake_at = d["type"], d["deadline"]


def _wait_done(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    assert step is not None
    s = st.steps[step]
    s.done, s.end, s.output, s.error = True, ts, d.get("output"), d.get("error")
    consumed = d.get("event")
    if consumed is not None:
        for ev in st.events:
            if ev.seq == consumed:
                ev.consumed = True
                break


def _event(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    st.events.append(BufferedEvent(seq, d["type"], d["payload"], ts))


def _resume(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    shift = d["shift"]
    for s in st.steps.values():
        if not s.done and s.wake_at is not None:
            s.wake_at += shift
    st.paused_at = None


def _restart(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    keep = set(d.get("keep", ()))
    st.steps = {k: s for k, s in st.steps.items() if k in keep}
    st.do_count = sum(1 for s in st.steps.values() if s.kind == "do")
    st.events.clear()
    st.warnings.clear()
    st.output = st.error = st.ended = st.started = st.paused_at = None


def _pass(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    st.passes += 1
    for key in d.get("replayed", ()):
        s = st.steps.get(key)
        if s is not None:
            s.replays += 1


def _warning(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    st.warnings.append(Warning_(ts, d["message"], d["missing"], d["ran"]))


def _parked(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    st.parked = d["reason"]


def _deleted(st: InstanceState, seq: int, ts: int, step: str | None, d: dict[str, Any]) -> None:
    st.deleted = True


_APPLY: dict[str, Callable[[InstanceState, int, int, str | None, dict[str, Any]], None]] = {
    "created": _created,
    "status": _status,
    "attempt": _attempt,
    "attempt_end": _attempt_end,
    "sleep": _sleep,
    "sleep_done": _sleep_done,
    "wait": _wait,
    "wait_done": _wait_done,
    "event": _event,
    "resume": _resume,
    "restart": _restart,
    "pass": _pass,
    "warning": _warning,
    "parked": _parked,
    "deleted": _deleted,
}


def fold(uid: str, rows: list[Row]) -> InstanceState:
    st = InstanceState(uid)
    for _uid, seq, ts, kind, step, data in rows:
        st.apply(seq, ts, kind, step, json.loads(data))
    return st
