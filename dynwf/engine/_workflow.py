"""What the engine runs and what it tells: registered workflows, step-boundary hooks,
and the records listeners receive."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from dynwf.engine._model import ErrorDict, InstanceState, StepState
from dynwf.engine._rules import DEFAULT_COMPATIBILITY_DATE, DEFAULT_STEP_LIMIT
from dynwf.engine._step import EventDict, Step, StepHost


class WorkflowProgram(Protocol):
    """What runs a pass: calls the tenant's ``run(event, step)`` against a host."""

    async def run(self, event: EventDict, host: StepHost) -> Any: ...


class EntrypointProgram:
    """Runs a ``WorkflowEntrypoint`` subclass in this process, a fresh object per pass."""

    def __init__(self, cls: type[Any], env: Any = None, ctx: Any = None) -> None:
        from dynwf.workers._context import ExecutionContext

        # Cloudflare never gives an entrypoint ctx=None.
        self.cls, self.env, self.ctx = cls, env, ctx if ctx is not None else ExecutionContext()

    async def run(self, event: EventDict, host: StepHost) -> Any:
        step = Step(host)
        try:
            return await self.cls(self.ctx, self.env).run(event, step)
        finally:
            step.close()


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow registered with the engine (one ``[[workflows]]`` entry)."""

    name: str
    binding: str
    program: WorkflowProgram
    class_name: str = ""
    script_name: str = ""
    compatibility_date: str = DEFAULT_COMPATIBILITY_DATE
    step_limit: int = DEFAULT_STEP_LIMIT
    # At most this many of its instances run at once (``workflows[].concurrency.limit``);
    # the others stay queued. None: only the engine's ``max_running`` applies.
    concurrency_limit: int | None = None


class Faults:
    """Hooks at step boundaries; the default does nothing. Crash/evict plans override."""

    def attempt_started(self, st: InstanceState, step: StepState) -> None:
        """The callback began (its code up to its first suspension point ran) and its
        attempt fact is recorded, not yet durable: ``engine.commit_now()`` makes it so."""

    def before_result(self, st: InstanceState, step: StepState) -> None:
        """The callback returned; its result is not recorded yet."""

    def after_result(self, st: InstanceState, step: StepState) -> None:
        """The result fact is queued; flush it with ``engine.commit_now()`` to make it durable."""


@dataclass(frozen=True, slots=True)
class StepEvent:
    """One finished attempt, for logs and listeners."""

    workflow: str
    scope: str
    instance: str
    step: str
    attempt: int
    ok: bool
    duration_ms: int
    error: ErrorDict | None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One status change, for logs and listeners: ``event`` is what moved it (``pause``,
    ``resume``, ``terminate``, ``restart``, ``wake``, ``suspend``, ``recover``, ...)."""

    instance: InstanceState
    event: str
    old: str
    new: str


Listener = Callable[[str, Any], None]
