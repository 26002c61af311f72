"""Test modifiers: skipping sleeps and retry delays (``TimeControl``, engine-wide or per
instance) and the engine side of Cloudflare's workflow introspection (``Modifiers``).

A ``Modifiers`` object is attached to one instance id (or to every new instance of a
workflow) before the instance runs; the run pass consults it at each step, so a
mocked step's callback never runs, in any isolation mode. Mocked results and errors
are journaled like real ones, so replay sees them too.

Steps are selected as Cloudflare's ``StepSelector`` is: a name and an index, the
index counting calls of that name from 1 (``{"name": "charge"}`` is index 1 only).
A workflow-wide ``Modifiers`` is a template: each instance gets its own copy when
it first runs, so ``times`` counters and mocked events are per instance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from dynwf.engine._model import ErrorDict
from dynwf.errors import ValidationError

StepRef = tuple[str, int]  # (name, index): the index-th call of the step called name


@dataclass(slots=True)
class _Times:
    value: Any
    times: int | None  # None: every attempt

    def take(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


Skip = bool | frozenset[str | StepRef]  # all, none, or steps by name (every call) or (name, index)


@dataclass(slots=True)
class TimeControl:
    """Skip sleeps and retry delays: all (True), none (False), or by step: a name skips
    every call of that step, a (name, index) pair only that call."""

    skip_sleeps: Skip = False
    skip_retry_delays: Skip = False

    def skips_sleep(self, name: str, count: int) -> bool:
        return _skips(self.skip_sleeps, name, count)

    def skips_retry(self, name: str, count: int) -> bool:
        return _skips(self.skip_retry_delays, name, count)

    def __or__(self, other: TimeControl) -> TimeControl:
        """Skips what either skips (the engine's setting and an instance's modifiers)."""
        return TimeControl(
            _either(self.skip_sleeps, other.skip_sleeps),
            _either(self.skip_retry_delays, other.skip_retry_delays),
        )


def _skips(s: Skip, name: str, count: int) -> bool:
    return s if isinstance(s, bool) else name in s or (name, count) in s


def _either(a: Skip, b: Skip) -> Skip:
    if a is True or b is True:
        return True
    return frozenset(a or ()) | frozenset(b or ()) or False


@dataclass(slots=True)
class Modifiers:
    """What tests change about an instance's steps (each step by name and index)."""

    time: TimeControl = field(default_factory=TimeControl)
    step_results: dict[StepRef, Any] = field(default_factory=dict)
    step_errors: dict[StepRef, _Times] = field(default_factory=dict)
    step_timeouts: dict[StepRef, _Times] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    event_timeouts: set[StepRef] = field(default_factory=set)
    _copies: dict[str, Modifiers] = field(default_factory=dict)

    def disable_sleeps(self, steps: list[StepRef] | None = None) -> None:
        self.time.skip_sleeps = True if steps is None else frozenset(steps)

    def disable_retry_delays(self, steps: list[StepRef] | None = None) -> None:
        self.time.skip_retry_delays = True if steps is None else frozenset(steps)

    def mock_step_result(self, step: StepRef, value: Any) -> None:
        if step in self.step_results:
            raise ValidationError(
                f"step {step[0]!r} (index {step[1]}) is already mocked: mock each step's "
                "result once per instance"
            )
        self.step_results[step] = value

    def _not_mocked(self, step: StepRef, what: str) -> None:
        if step in self.step_results:
            raise ValidationError(
                f"cannot {what} step {step[0]!r} (index {step[1]}) after mocking its result: "
                "the mocked result answers every attempt, so drop one of the two"
            )

    def mock_step_error(self, step: StepRef, error: ErrorDict, times: int | None = None) -> None:
        self._not_mocked(step, "mock an error on")
        self.step_errors[step] = _Times(error, times)

    def force_step_timeout(self, step: StepRef, times: int | None = None) -> None:
        self._not_mocked(step, "force a timeout on")
        self.step_timeouts[step] = _Times(None, times)

    def mock_event(self, type_: str, payload: Any) -> None:
        self.events.append({"type": type_, "payload": payload})

    def force_event_timeout(self, step: StepRef) -> None:
        self.event_timeouts.add(step)

    def clear(self) -> None:
        """Undo every modification (a disposed introspector's instances run as written)."""
        for mods in self._copies.values():
            mods.clear()
        fresh = Modifiers()
        for name in Modifiers.__slots__:
            setattr(self, name, getattr(fresh, name))

    def for_instance(self, uid: str) -> Modifiers:
        """This template's own copy for instance ``uid``, made the first time it is asked."""
        mods = self._copies.get(uid)
        if mods is None:
            mods = copy.deepcopy(self)
            mods._copies = {}
            self._copies[uid] = mods
        return mods

    # -- what the run pass asks --------------------------------------------------------
    def times_out_event(self, name: str, count: int) -> bool:
        return (name, count) in self.event_timeouts

    def plan(self, name: str, count: int, timeout_ms: int) -> tuple[str, Any] | None:
        """How the next attempt of a step is answered: a result, an error, or None (run it)."""
        if (name, count) in self.step_results:
            return ("result", self.step_results[(name, count)])
        t = self.step_timeouts.get((name, count))
        if t is not None and t.take():
            error = {
                "name": "WorkflowTimeoutError",
                "message": f"Execution timed out after {timeout_ms}ms",
            }
            return ("error", error)
        e = self.step_errors.get((name, count))
        if e is not None and e.take():
            return ("error", dict(e.value))
        return None

    def take_event(self, type_: str) -> dict[str, Any] | None:
        for i, ev in enumerate(self.events):
            if ev["type"] == type_:
                return self.events.pop(i)
        return None
