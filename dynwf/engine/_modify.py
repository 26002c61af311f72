"""Test modifiers: skipping sleeps and retry delays (``TimeControl``, engine-wide or per
instance) and the engine side of Cloudflare's workflow introspection (``Modifiers``).

A ``Modifiers`` object is attached to one instance id (or to every new instance of a
workflow) before the instance runs; the run pass consults it at each step, so a
mocked step's callback never runs, in any isolation mode. Mocked results and errors
are journaled like real ones, so replay sees them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dynwf.engine._model import ErrorDict


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


@dataclass(slots=True)
class TimeControl:
    """Skip sleeps and retry delays: all (True), none (False), or by step name."""

    skip_sleeps: bool | frozenset[str] = False
    skip_retry_delays: bool | frozenset[str] = False

    def skips_sleep(self, name: str) -> bool:
        s = self.skip_sleeps
        return s if isinstance(s, bool) else name in s

    def skips_retry(self, name: str) -> bool:
        s = self.skip_retry_delays
        return s if isinstance(s, bool) else name in s

    def __or__(self, other: TimeControl) -> TimeControl:
        """Skips what either skips (the engine's setting and an instance's modifiers)."""
        return TimeControl(
            _either(self.skip_sleeps, other.skip_sleeps),
            _either(self.skip_retry_delays, other.skip_retry_delays),
        )


def _either(a: bool | frozenset[str], b: bool | frozenset[str]) -> bool | frozenset[str]:
    if a is True or b is True:
        return True
    return frozenset(a or ()) | frozenset(b or ()) or False


@dataclass(slots=True)
class Modifiers:
    """What tests change about an instance's steps (all by step name)."""

    time: TimeControl = field(default_factory=TimeControl)
    step_results: dict[str, Any] = field(default_factory=dict)
    step_errors: dict[str, _Times] = field(default_factory=dict)
    step_timeouts: dict[str, _Times] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    event_timeouts: set[str] = field(default_factory=set)

    def disable_sleeps(self, steps: list[str] | None = None) -> None:
        self.time.skip_sleeps = True if steps is None else frozenset(steps)

    def disable_retry_delays(self, steps: list[str] | None = None) -> None:
        self.time.skip_retry_delays = True if steps is None else frozenset(steps)

    def mock_step_result(self, step: str, value: Any) -> None:
        self.step_results[step] = value

    def mock_step_error(self, step: str, error: ErrorDict, times: int | None = None) -> None:
        self.step_errors[step] = _Times(error, times)

    def force_step_timeout(self, step: str, times: int | None = None) -> None:
        self.step_timeouts[step] = _Times(None, times)

    def mock_event(self, type_: str, payload: Any) -> None:
        self.events.append({"type": type_, "payload": payload})

    def force_event_timeout(self, step: str) -> None:
        self.event_timeouts.add(step)

    def plan(self, name: str, timeout_ms: int) -> tuple[str, Any] | None:
        """How the next attempt of step ``name`` is answered: a result, an error, or None (run it)."""
        if name in self.step_results:
            return ("result", self.step_results[name])
        error = self.attempt_error(name, timeout_ms)
        return ("error", error) if error is not None else None

    def attempt_error(self, name: str, timeout_ms: int) -> ErrorDict | None:
        """The error a mocked attempt of step ``name`` fails with, if any."""
        t = self.step_timeouts.get(name)
        if t is not None and t.take():
            return {
                "name": "WorkflowTimeoutError",
                "message": f"Execution timed out after {timeout_ms}ms",
            }
        e = self.step_errors.get(name)
        if e is not None and e.take():
            return dict(e.value)
        return None

    def take_event(self, type_: str) -> dict[str, Any] | None:
        for i, ev in enumerate(self.events):
            if ev["type"] == type_:
                return self.events.pop(i)
        return None
