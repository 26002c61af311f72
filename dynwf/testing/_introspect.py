"""Workflow introspection for tests: the Python counterpart of Cloudflare's vitest helpers.

    inst = await introspect_workflow_instance(env.WORKFLOWS, "order-1")
    await inst.modify(lambda m: (m.disable_sleeps(), m.mock_step_result({"name": "charge"}, {"ok": 1})))
    await env.WORKFLOWS.create({"id": "order-1"})
    assert await inst.wait_for_step_result({"name": "charge"}) == {"ok": 1}
    await inst.wait_for_status("complete")

dynwf adds ``crash_at`` (the engine 'dies' at a step point and recovers from the journal),
``evict_at`` (the tenant's loaded code is dropped after a step),
``hibernate_every_step`` (every pass ends after each step and replays from the top) and
``inst.divergences`` (replay divergences: assert there are none).

Steps are selected as ``{"name": str, "index": int}``; the index counts calls of that
name from 1 and defaults to 1, as in Cloudflare's ``StepSelector``. A plain name is
accepted as ``{"name": name}``. ``dispose()`` (or ``async with``) ends the test's hold
on an instance or a workflow, as ``dispose()`` / ``await using`` does in vitest.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal

from dynwf.engine import (
    FINISHED,
    Engine,
    Faults,
    InstanceState,
    Modifiers,
    StepRef,
    StepState,
    WorkflowBinding,
)
from dynwf.errors import DynwfError, ValidationError

When = Literal["before", "after", "during"]


class IntrospectionTimeout(DynwfError, TimeoutError):
    """A ``wait_for_*`` call did not see what it waited for in time."""


def _engine_of(binding: Any) -> tuple[Engine, str, str]:
    inner = getattr(binding, "_inner", binding)  # a tenant's wrapped binding
    if not isinstance(inner, WorkflowBinding):
        raise ValidationError(
            f"introspection takes a Workflow binding (env.WORKFLOWS or a tenant's wrapped binding), "
            f"got {type(binding).__name__}"
        )
    return inner.engine, inner.workflow, inner.scope


def _step_ref(selector: Any) -> StepRef:
    """``(name, index)`` of a step selector: ``{"name", "index"?}`` or a plain name."""
    if isinstance(selector, str):
        return (selector, 1)
    if isinstance(selector, dict) and isinstance(selector.get("name"), str):
        index = selector.get("index", 1)
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise ValidationError(
                f"step selector {selector!r}: 'index' counts calls of the step name from 1 "
                f"(the 2nd call of {selector['name']!r} is index 2), got {index!r}"
            )
        return (str(selector["name"]), index)
    raise ValidationError(
        f"a step is selected as {{'name': str, 'index'?: int}} or a step name, got {selector!r}"
    )


def _error_dict(error: Any) -> dict[str, str]:
    if isinstance(error, BaseException):
        return {"name": type(error).__name__, "message": str(error)}
    if isinstance(error, dict) and "message" in error:
        return {"name": str(error.get("name", "Error")), "message": str(error["message"])}
    raise ValidationError(f"a mocked error is an exception or {{'name', 'message'}}, got {error!r}")


class Modifier:
    """What ``modify()`` hands your callback; every method selects steps by name and index."""

    def __init__(self, mods: Modifiers, rules: _Rules) -> None:
        self._mods, self._rules = mods, rules

    def disable_sleeps(self, steps: list[Any] | None = None) -> None:
        self._mods.disable_sleeps(None if steps is None else [_step_ref(s) for s in steps])

    def disable_retry_delays(self, steps: list[Any] | None = None) -> None:
        self._mods.disable_retry_delays(None if steps is None else [_step_ref(s) for s in steps])

    def mock_step_result(self, step: Any, value: Any) -> None:
        self._mods.mock_step_result(_step_ref(step), value)

    def mock_step_error(self, step: Any, error: Any, times: int | None = None) -> None:
        self._mods.mock_step_error(_step_ref(step), _error_dict(error), times)

    def force_step_timeout(self, step: Any, times: int | None = None) -> None:
        self._mods.force_step_timeout(_step_ref(step), times)

    def mock_event(self, event: dict[str, Any]) -> None:
        self._mods.mock_event(event["type"], event.get("payload"))

    def force_event_timeout(self, step: Any) -> None:
        self._mods.force_event_timeout(_step_ref(step))

    # dynwf's own; the step's index is the selector's unless ``count`` is given
    def crash_at(self, step: Any, when: When = "after", count: int | None = None) -> None:
        if when not in ("before", "after", "during"):
            raise ValidationError(f"crash_at when={when!r}: use 'before', 'after' or 'during'")
        name, index = _step_ref(step)
        self._rules.crashes.append([name, index if count is None else count, when])

    def evict_at(self, step: Any, count: int | None = None) -> None:
        name, index = _step_ref(step)
        self._rules.evictions.append([name, index if count is None else count])

    def hibernate_every_step(self) -> None:
        self._rules.hibernate = True

    disableSleeps = disable_sleeps
    disableRetryDelays = disable_retry_delays
    mockStepResult = mock_step_result
    mockStepError = mock_step_error
    forceStepTimeout = force_step_timeout
    mockEvent = mock_event
    forceEventTimeout = force_event_timeout


class _Rules:
    def __init__(self) -> None:
        self.crashes: list[list[Any]] = []  # [step, count, when], removed once fired
        self.evictions: list[list[Any]] = []
        self.hibernate = False
        self.evictor: Callable[[InstanceState], Any] | None = None


class _TestFaults(Faults):
    """Routes step-boundary hooks to the rules of the instance they concern."""

    def __init__(self, engine: Engine, previous: Faults) -> None:
        self.engine, self.previous = engine, previous
        self.rules: list[tuple[Callable[[InstanceState], bool], _Rules]] = []

    def _matching(self, st: InstanceState) -> list[_Rules]:
        return [r for match, r in self.rules if match(st)]

    def _fire_crash(self, st: InstanceState, step: StepState, when: str) -> None:
        for rules in self._matching(st):
            for rule in list(rules.crashes):
                if rule[0] == step.name and rule[1] == step.count and rule[2] == when:
                    rules.crashes.remove(rule)
                    # what was recorded before the point is journaled (for "during", the
                    # attempt of a callback that began), nothing after it
                    self.engine.commit_now()
                    self.engine.crash_soon()

    def attempt_started(self, st: InstanceState, step: StepState) -> None:
        self.previous.attempt_started(st, step)
        self._fire_crash(st, step, "during")

    def before_result(self, st: InstanceState, step: StepState) -> None:
        self.previous.before_result(st, step)
        self._fire_crash(st, step, "before")

    def after_result(self, st: InstanceState, step: StepState) -> None:
        self.previous.after_result(st, step)
        self._fire_crash(st, step, "after")
        for rules in self._matching(st):
            for rule in list(rules.evictions):
                if rule[0] == step.name and rule[1] == step.count and rules.evictor is not None:
                    rules.evictions.remove(rule)
                    # at the next step boundary, so the step now starting is not cut off
                    self.engine.after_pass(st.uid, functools.partial(rules.evictor, st))
            if rules.hibernate:
                self.engine.interrupt(st.uid)


def _install(engine: Engine) -> _TestFaults:
    if not isinstance(engine.faults, _TestFaults):
        engine.faults = _TestFaults(engine, engine.faults)
    return engine.faults


class _Introspector:
    def __init__(self, engine: Engine, workflow: str, mods: Modifiers, rules: _Rules) -> None:
        self._engine, self._workflow = engine, workflow
        self._mods, self._rules = mods, rules
        self._disposed = False

    async def _apply(self, fn: Callable[[Modifier], Any]) -> None:
        if self._disposed:
            raise ValidationError(
                f"this introspector of workflow {self._workflow!r} was disposed: "
                "introspect the workflow or instance again to modify it"
            )
        result = fn(Modifier(self._mods, self._rules))
        if inspect.isawaitable(result):
            await result

    def _release(self, rules_too: bool = True) -> None:
        """Drop the modifications (and the test rules): what runs from now on runs as written."""
        self._mods.clear()
        if rules_too:
            faults = _install(self._engine)
            faults.rules = [(m, r) for m, r in faults.rules if r is not self._rules]


class InstanceIntrospector(_Introspector):
    def __init__(
        self,
        engine: Engine,
        workflow: str,
        scope: str,
        id: str,
        mods: Modifiers,
        rules: _Rules,
        *,
        owns_rules: bool = True,
    ) -> None:
        super().__init__(engine, workflow, mods, rules)
        self._scope, self.id = scope, id
        self._owns_rules = owns_rules  # False: the workflow introspector's, shared

    async def modify(self, fn: Callable[[Modifier], Any]) -> InstanceIntrospector:
        """Call ``fn(m)`` (sync or async) to set mocks and switches before the run."""
        await self._apply(fn)
        return self

    async def dispose(self) -> None:
        """Stop the instance if it still runs, and drop its modifications (idempotent).

        Cloudflare's local engine aborts the instance's Durable Object ("Instance
        dispose"); dynwf terminates it through the engine, so its status says so.
        """
        if self._disposed:
            return
        self._disposed = True
        self._release(rules_too=self._owns_rules)
        st = self._state()
        if st is not None and st.status not in FINISHED:
            await self._engine.terminate(st)

    async def __aenter__(self) -> InstanceIntrospector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.dispose()

    def _state(self) -> InstanceState | None:
        try:
            return self._engine.lookup(self._workflow, self._scope, self.id)
        except LookupError:
            return None

    async def _until(self, check: Callable[[], Any], what: str, timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = check()
            if found is not None:
                return found
            if loop.time() > deadline:
                st = self._state()
                now = st.status.value if st else "not created"
                raise IntrospectionTimeout(
                    f"instance {self.id!r}: {what} did not happen within {timeout} s (it is {now})"
                )
            await asyncio.sleep(0.005)

    async def wait_for_step_result(self, step: Any, timeout: float = 60.0) -> Any:
        """The result of step ``{"name", "index"?}`` once it is journaled (raises its error)."""
        name, index = _step_ref(step)

        def check() -> Any:
            st = self._state()
            if st is None:
                return None
            for s in st.steps.values():
                if s.kind == "do" and s.name == name and s.count == index and s.done:
                    return [s]
            return None

        (s,) = await self._until(check, f"step {name!r} (index {index}) finishing", timeout)
        if s.error is not None:
            from dynwf.engine import error_from_dict

            raise error_from_dict(s.error)
        return s.output

    async def wait_for_status(self, status: str, timeout: float = 60.0) -> None:
        def check() -> Any:
            st = self._state()
            if st is not None and st.status.value == status:
                return True
            if st is not None and st.status in FINISHED and st.status.value != status:
                raise AssertionError(
                    f"instance {self.id!r} ended {st.status.value} (error: {st.error}) "
                    f"while waiting for {status!r}"
                )
            return None

        await self._until(check, f"status {status!r}", timeout)

    async def get_output(self) -> Any:
        st = self._state()
        return st.output if st is not None else None

    async def get_error(self) -> dict[str, str] | None:
        st = self._state()
        return st.error if st is not None else None

    @property
    def divergences(self) -> list[str]:
        """The instance's replay divergences so far, one message each (dynwf's own).

        A pass that did not request steps journaled by an earlier one, while new steps
        ran, means code outside steps is not deterministic (a step name from
        ``random`` or the time, state kept between passes); each journaled step is
        reported once. ``assert inst.divergences == []`` after ``wait_for_status``.
        """
        st = self._state()
        return [w.message for w in st.warnings] if st is not None else []

    waitForStepResult = wait_for_step_result
    waitForStatus = wait_for_status
    getOutput = get_output
    getError = get_error


class WorkflowIntrospector(_Introspector):
    """Modifies every instance of the workflow created from now on, each on its own."""

    def __init__(
        self, engine: Engine, workflow: str, scope: str, mods: Modifiers, rules: _Rules
    ) -> None:
        super().__init__(engine, workflow, mods, rules)
        self._scope = scope
        self._since = engine.clock.now_ms()

    async def modify_all(self, fn: Callable[[Modifier], Any]) -> None:
        """Call ``fn(m)`` (sync or async); what it sets applies to each instance created
        afterwards, with its own ``times`` counters and mocked events."""
        await self._apply(fn)

    def get(self) -> list[InstanceIntrospector]:
        """An introspector for each instance of the workflow created since this one."""
        out = []
        for st in self._engine.all_states():
            if (
                st.workflow == self._workflow
                and st.scope == self._scope
                and st.created >= self._since
            ):
                out.append(
                    InstanceIntrospector(
                        self._engine,
                        self._workflow,
                        self._scope,
                        st.id,
                        self._mods.for_instance(st.uid),
                        self._rules,
                        owns_rules=False,
                    )
                )
        return out

    async def dispose(self) -> None:
        """Dispose every instance introspector (see ``InstanceIntrospector.dispose``) and
        stop modifying new instances (idempotent)."""
        if self._disposed:
            return
        instances = self.get()
        self._disposed = True
        for inst in instances:
            await inst.dispose()
        self._release()

    async def __aenter__(self) -> WorkflowIntrospector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.dispose()

    modifyAll = modify_all
    # dynwf's earlier names, kept for existing tests
    modify = modify_all
    get_instances = get
    getInstances = get


def _evictor(binding: Any) -> Callable[[InstanceState], Any] | None:
    evict: Callable[[InstanceState], Any] | None = getattr(binding, "_dynwf_evict", None)
    return evict


async def introspect_workflow_instance(binding: Any, id: str) -> InstanceIntrospector:
    """Watch (and modify) the instance ``id`` that ``binding`` will create."""
    engine, workflow, scope = _engine_of(binding)
    mods = engine.modify(workflow, id, scope=scope)
    rules = _Rules()
    rules.evictor = _evictor(binding)
    _install(engine).rules.append(
        (lambda st: st.workflow == workflow and st.scope == scope and st.id == id, rules)
    )
    return InstanceIntrospector(engine, workflow, scope, id, mods, rules)


async def introspect_workflow(binding: Any) -> WorkflowIntrospector:
    """Watch (and modify) every instance ``binding`` creates from now on."""
    engine, workflow, scope = _engine_of(binding)
    mods = engine.modify(workflow, None)
    rules = _Rules()
    rules.evictor = _evictor(binding)
    since = engine.clock.now_ms()
    _install(engine).rules.append(
        (lambda st: st.workflow == workflow and st.scope == scope and st.created >= since, rules)
    )
    return WorkflowIntrospector(engine, workflow, scope, mods, rules)


introspectWorkflowInstance = introspect_workflow_instance
introspectWorkflow = introspect_workflow
