"""The ``step`` object ``run(event, step)`` receives, and the host protocol it talks to.

Everything here runs where the tenant's code runs (in the engine's process or in an
isolate); it holds no journal state. Each step call asks the ``StepHost`` what to
do (return a journaled result, raise a journaled error, run an attempt now) and
reports attempts back, all in JSON-able data, so a host can sit across a pipe.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import inspect
from collections.abc import Awaitable, Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from dynwf.engine._config import DELAY_FUNCTION_TIMEOUT_S, DYNAMIC_DELAY, parse_duration
from dynwf.engine._model import ErrorDict, step_key
from dynwf.engine._rules import check_event_type, check_step_name, json_value
from dynwf.errors import InvalidDurationError, PayloadError
from dynwf.workers.workflows import (
    NonRetryableError,
    WorkflowInternalError,
    WorkflowStepError,
    WorkflowTimeoutError,
)

IMPLICIT_DEPS_SINCE = "2026-02-25"

# ("done", output) | ("error", error dict) | ("run", attempt n, frozen config, timeout ms)
DoBegin = (
    tuple[Literal["done"], Any]
    | tuple[Literal["error"], ErrorDict]
    | tuple[Literal["run"], int, dict[str, Any], int]
)
# ("done", output) | ("error", error dict)
Outcome = tuple[Literal["done"], Any] | tuple[Literal["error"], ErrorDict]


class StepHost(Protocol):
    """The engine side of one run pass. Calls that must wait never return (the pass ends)."""

    compatibility_date: str

    async def do_begin(
        self, key: str, name: str, count: int, config: Mapping[str, Any] | None
    ) -> DoBegin: ...

    def began(self, key: str, attempt: int) -> None:
        """Attempt ``attempt`` of step ``key`` began: its callback's code up to its first
        suspension point ran. Called once per ``("run", ...)`` answer, before ``do_end``."""

    async def do_end(
        self,
        key: str,
        attempt: int,
        ok: bool,
        value: Any,
        error: ErrorDict | None,
        retryable: bool,
        delay_ms: int | None = None,
    ) -> Outcome:
        """``delay_ms``: for a failed attempt of a step whose ``retries.delay`` is a
        callable, the callable's answer (the base of the retry's delay)."""
        ...

    async def sleep(self, key: str, name: str, count: int, ms: int, until: int | None) -> None: ...

    async def wait_for_event(
        self, key: str, name: str, count: int, type_: str, timeout_ms: int
    ) -> Outcome: ...


class EventDict(dict[str, Any]):
    """A dict that also allows attribute access (``event.payload``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_REBUILT: dict[str, type[Exception]] = {
    "NonRetryableError": NonRetryableError,
    "WorkflowTimeoutError": WorkflowTimeoutError,
    "WorkflowInternalError": WorkflowInternalError,
}


def error_to_dict(exc: BaseException) -> ErrorDict:
    js_name = getattr(exc, "name", None)
    if type(exc).__name__ == "JsException" and isinstance(js_name, str):
        # A step error that reached run() as Cloudflare delivers it: keep its own name.
        return {"name": js_name, "message": str(getattr(exc, "message", ""))}
    return {"name": type(exc).__name__, "message": str(exc)}


def error_from_dict(error: ErrorDict) -> Exception:
    """The exception a journaled error replays as: same class name, same message."""
    name, message = error.get("name", "Error"), error.get("message", "")
    cls = _REBUILT.get(name)
    if cls is None:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception):
            cls = builtin
        else:
            cls = _REBUILT[name] = type(name, (WorkflowStepError,), {})
    if cls is KeyError and len(message) >= 2 and message[0] == message[-1] and message[0] in "'\"":
        # str(KeyError("k")) is "'k'": undo that so the replayed error reads the same
        message = ast.literal_eval(message)
    try:
        return cls(message)
    except TypeError:  # a builtin with another signature (e.g. UnicodeDecodeError)
        return WorkflowStepError(f"{name}: {message}")


def _to_ms_epoch(when: Any) -> int:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1000)
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return int(when)
    raise TypeError(
        f"sleep_until needs a datetime or epoch milliseconds, got {type(when).__name__}"
    )


class _Declared:
    """A decorated step function: what dependency resolution memoizes per pass."""

    __slots__ = ("call", "concurrent", "config", "depends", "fn", "last", "name", "params")

    def __init__(
        self,
        name: str,
        fn: Callable[..., Any],
        config: Mapping[str, Any] | None,
        concurrent: bool,
        depends: list[Any] | None,
    ) -> None:
        self.name, self.fn, self.config = name, fn, config
        self.concurrent, self.depends = concurrent, depends
        code = getattr(fn, "__code__", None)
        if code is not None and not inspect.ismethod(fn):
            n = code.co_argcount + code.co_kwonlyargcount
            self.params = list(code.co_varnames[:n])
        else:
            self.params = list(inspect.signature(fn).parameters)
        self.last: asyncio.Future[Any] | None = None
        self.call: Callable[[], Awaitable[Any]] | None = None


class _Began:
    """Awaits an awaitable as ``await`` would, calling ``began()`` once its code up to the
    first suspension point has run (or it finished or raised without suspending).

    This is how ``began`` is exact: reported after the callback really ran, never before
    (a task switch could otherwise let a crash land in between).
    """

    __slots__ = ("_awaitable", "_began")

    def __init__(self, awaitable: Awaitable[Any], began: Callable[[], None]) -> None:
        self._awaitable, self._began = awaitable, began

    def __await__(self) -> Generator[Any, Any, Any]:
        it = self._awaitable.__await__()
        try:
            value = it.send(None)
        except StopIteration as stop:
            self._began()
            return stop.value
        except BaseException:
            self._began()
            raise
        self._began()
        while True:  # what ``yield from it`` does, for an iterator already started
            try:
                sent = yield value
            except GeneratorExit:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
                raise
            except BaseException as exc:
                try:
                    value = it.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = it.send(sent)
                except StopIteration as stop:
                    return stop.value


class Step:
    """The tenant-facing ``step``: ``do``, ``sleep``, ``sleep_until``, ``wait_for_event``."""

    def __init__(
        self, host: StepHost, *, rebuild: Callable[[ErrorDict], Exception] | None = None
    ) -> None:
        self._host = host
        # How a journaled step error is raised to run(): by default as its own class;
        # tenant code gets what Cloudflare's SDK rebuilds (dynwf.workers._errors).
        self._rebuild = rebuild or error_from_dict
        self._counts: dict[tuple[str, ...], int] = {}
        self._declared: dict[str, _Declared] = {}
        self._legacy = host.compatibility_date < IMPLICIT_DEPS_SINCE

    @property
    def host(self) -> StepHost:
        """Where this step object sends its calls (the engine's run pass)."""
        return self._host

    def close(self) -> None:
        """Drop the pass's step closures (they form cycles the GC would otherwise chase)."""
        for decl in self._declared.values():
            decl.call = None
            decl.last = None
        self._declared.clear()

    def _next(self, *identity: str) -> int:
        n = self._counts.get(identity, 0) + 1
        self._counts[identity] = n
        return n

    # -- step.do -----------------------------------------------------------------
    def do(
        self,
        name: str | Callable[..., Any] | None = None,
        *,
        depends: list[Any] | None = None,
        concurrent: bool = False,
        config: Mapping[str, Any] | None = None,
    ) -> Any:
        """Decorate a step callback; calling the result runs the step (once per call)."""
        if callable(name):  # bare @step.do
            return self.do()(name)
        if depends is not None and not self._legacy:
            raise TypeError(
                "step.do(depends=...) is the form for compatibility dates before "
                f"{IMPLICIT_DEPS_SINCE}; name each dependency as a parameter of the step function"
            )

        def decorate(fn: Callable[..., Any]) -> Callable[[], Awaitable[Any]]:
            step_name = name if name is not None else fn.__name__
            check_step_name(step_name)
            decl = _Declared(step_name, fn, config, concurrent, depends)
            # Dependencies are found by step name, as in Cloudflare's SDK.
            self._declared[step_name] = decl

            async def call() -> Any:
                fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                decl.last = fut
                try:
                    result = await self._invoke(decl)
                except BaseException as exc:
                    fut.set_exception(exc)
                    fut.exception()  # mark retrieved: the caller gets it directly
                    raise
                fut.set_result(result)
                return result

            call.__name__ = fn.__name__
            call._dynwf_step = decl  # type: ignore[attr-defined]
            decl.call = call
            return call

        return decorate

    @staticmethod
    async def _dependency(decl: _Declared) -> Any:
        """A dependency's value: its latest call in this pass, else one call made now."""
        if decl.last is not None:
            return await asyncio.shield(decl.last)
        assert decl.call is not None
        return await decl.call()

    def _dependencies(self, decl: _Declared) -> list[_Declared | None]:
        """Per parameter, in order: the step it depends on, or None for ``ctx``."""
        out: list[_Declared | None] = []
        if not self._legacy:
            for p in decl.params:
                if p == "ctx":
                    out.append(None)
                elif p in self._declared and self._declared[p] is not decl:
                    out.append(self._declared[p])
                else:
                    raise TypeError(
                        f"step {decl.name!r}: unexpected parameter {p!r}; a step parameter is "
                        "'ctx' or the name of a step declared earlier with @step.do"
                    )
            return out
        deps = list(decl.depends or [])
        non_ctx = [p for p in decl.params if p != "ctx"]
        if len(deps) != len(non_ctx):
            raise TypeError(
                f"step {decl.name!r} declares {len(non_ctx)} non-ctx parameter(s) but 'depends' "
                f"has {len(deps)} item(s)"
            )
        it = iter(deps)
        for p in decl.params:
            if p == "ctx":
                out.append(None)
                continue
            dep = next(it)
            found = getattr(dep, "_dynwf_step", None)
            if found is None:
                raise TypeError(
                    f"step {decl.name!r}: 'depends' entry for parameter {p!r} is not a function "
                    "decorated with step.do"
                )
            out.append(found)
        return out

    async def _invoke(self, decl: _Declared) -> Any:
        count = self._next("do", decl.name)
        key = step_key("do", decl.name, count)
        deps = self._dependencies(decl)
        values = await self._gather(
            [self._dependency(d) for d in deps if d is not None], decl.concurrent
        )
        delay_fn = _delay_function(decl.config)
        config = decl.config
        if delay_fn is not None:  # the callable stays here; the engine sees "[dynamic]"
            assert config is not None
            config = {**config, "retries": {**config["retries"], "delay": DYNAMIC_DELAY}}
        begin = await self._host.do_begin(key, decl.name, count, config)
        if begin[0] == "done":
            return begin[1]
        if begin[0] == "error":
            raise self._rebuild(begin[1])
        _, attempt, frozen, timeout_ms = begin
        ctx = EventDict(step=EventDict(name=decl.name, count=count), attempt=attempt, config=frozen)
        it = iter(values)
        args = [ctx if d is None else next(it) for d in deps]
        ok, value, error, retryable, exc = await self._attempt(decl, args, timeout_ms, key, attempt)
        delay: list[int] = []  # a dynamic delay's answer, when a retry follows
        retries = not ok and retryable and attempt <= frozen["retries"]["limit"]
        if retries and delay_fn is not None:
            asked, failure = await _ask_delay(delay_fn, ctx, exc, f"{decl.name}-{count}")
            if failure is not None:  # the step fails without retry
                error, retryable = failure, False
            else:
                assert asked is not None
                delay = [asked]
        outcome = await self._host.do_end(key, attempt, ok, value, error, retryable, *delay)
        if outcome[0] == "done":
            return outcome[1]
        raise self._rebuild(outcome[1])

    @staticmethod
    async def _gather(aws: list[Awaitable[Any]], concurrent: bool) -> list[Any]:
        if concurrent:
            return list(await asyncio.gather(*aws))
        return [await a for a in aws]

    async def _attempt(
        self, decl: _Declared, args: list[Any], timeout_ms: int, key: str, attempt: int
    ) -> tuple[bool, Any, ErrorDict | None, bool, BaseException | None]:
        """Run one attempt's callback; the host hears ``began`` once the callback's code
        up to its first suspension point ran (all of it, for a plain function)."""

        def began() -> None:
            self._host.began(key, attempt)

        try:
            try:
                result = decl.fn(*args)
            except BaseException:
                began()
                raise
            if inspect.isawaitable(result):
                async with asyncio.timeout(timeout_ms / 1000):
                    result = await _Began(result, began)
            else:
                began()
            clean, _ = json_value(result, what=f"the result of step {decl.name!r}")
            return True, clean, None, True, None
        except TimeoutError:  # asyncio.timeout's, or one the callback raised itself
            timeout = WorkflowTimeoutError(f"Execution timed out after {timeout_ms}ms")
            return False, None, error_to_dict(timeout), True, timeout
        except PayloadError as exc:
            return False, None, {"name": "TypeError", "message": str(exc)}, False, exc
        except NonRetryableError as exc:
            return False, None, {"name": "NonRetryableError", "message": str(exc)}, False, exc
        except Exception as exc:
            return False, None, error_to_dict(exc), True, exc

    # -- sleep / wait ------------------------------------------------------------
    async def sleep(self, name: str, duration: str | int | timedelta) -> None:
        check_step_name(name)
        if isinstance(duration, timedelta):
            ms = int(duration.total_seconds() * 1000)
        else:
            ms = parse_duration(duration, what=f"step.sleep({name!r}) duration")
        _check_sleep(name, ms)
        count = self._next("sleep", name, str(ms))
        await self._host.sleep(step_key("sleep", name, count, ms), name, count, ms, None)

    async def sleep_until(self, name: str, timestamp: datetime | int | float) -> None:
        check_step_name(name)
        until = _to_ms_epoch(timestamp)
        count = self._next("sleep", name, f"until:{until}")
        key = step_key("sleep", name, count, until)
        await self._host.sleep(key, name, count, 0, until)

    async def wait_for_event(
        self, name: str, event_type: str, /, timeout: str | int = "24 hours"
    ) -> EventDict:
        check_step_name(name)
        check_event_type(event_type)
        timeout_ms = parse_duration(timeout, what=f"step.wait_for_event({name!r}) timeout")
        count = self._next("waitForEvent", name)
        key = step_key("waitForEvent", name, count)
        outcome = await self._host.wait_for_event(key, name, count, event_type, timeout_ms)
        if outcome[0] == "error":
            raise self._rebuild(outcome[1])
        ev = EventDict(outcome[1])
        ev["timestamp"] = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
        return ev

    # camelCase aliases, as Cloudflare accepts them
    sleepUntil = sleep_until
    waitForEvent = wait_for_event


def _delay_function(config: Mapping[str, Any] | None) -> Callable[..., Any] | None:
    """A step config's callable ``retries.delay``, if it has one."""
    if not isinstance(config, Mapping):
        return None
    retries = config.get("retries")
    delay = retries.get("delay") if isinstance(retries, Mapping) else None
    return delay if callable(delay) else None


async def _ask_delay(
    fn: Callable[..., Any], ctx: EventDict, error: BaseException | None, step: str
) -> tuple[int, None] | tuple[None, ErrorDict]:
    """A dynamic delay's answer for one failed attempt, in ms, or the error the step then
    fails with (Cloudflare's NonRetryableDelayError and its messages)."""

    def failed(reason: str) -> tuple[None, ErrorDict]:
        message = f'The delay function for step "{step}" {reason}'
        return None, {"name": "NonRetryableDelayError", "message": message}

    try:
        answer = fn(EventDict(ctx=ctx, error=error))
        if inspect.isawaitable(answer):
            async with asyncio.timeout(DELAY_FUNCTION_TIMEOUT_S):
                answer = await answer
    except TimeoutError:
        return failed(f"did not return within {DELAY_FUNCTION_TIMEOUT_S:g} seconds")
    except Exception as exc:
        return failed(f"threw an error: {exc}")
    try:
        return parse_duration(answer), None
    except InvalidDurationError:
        return failed(
            'returned an invalid delay value (expected a number of ms or a duration string like "30 seconds")'
        )


def _check_sleep(name: str, ms: int) -> None:
    from dynwf.engine._config import MAX_SLEEP_MS
    from dynwf.errors import InvalidDurationError

    if ms > MAX_SLEEP_MS:
        raise InvalidDurationError(
            f"step.sleep({name!r}) of {ms} ms is longer than the maximum of 365 days"
        )


def event_for(
    payload: Any, created_ms: int, instance_id: str, workflow: str, schedule: Any = None
) -> EventDict:
    event = EventDict(
        payload=payload,
        timestamp=datetime.fromtimestamp(created_ms / 1000, tz=UTC),
        instanceId=instance_id,
        workflowName=workflow,
    )
    if schedule is not None:
        event["schedule"] = schedule
    return event
