"""One run pass of one instance: the engine side of every step call.

This module decides what a step call does: return its journaled result, raise its
journaled error, run a new attempt, retry after a delay, sleep, take a buffered
event, time out, or end the pass (hibernate). The pass ends whenever the instance
must wait; the next pass calls ``run()`` from the top and replays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dynwf.engine._clock import iso_ms
from dynwf.engine._config import StepConfig, config_from_frozen, resolve_step_config
from dynwf.engine._model import INTERNAL_ERROR, ErrorDict, InstanceState, StepState
from dynwf.engine._states import Status
from dynwf.engine._step import DoBegin, Outcome

if TYPE_CHECKING:
    from collections.abc import Callable

    from dynwf.engine._engine import Engine
    from dynwf.engine._modify import TimeControl
    from dynwf.engine._workflow import Workflow


# The engine's own deadline for an attempt comes this long after its timeout. A callback
# whose event loop is free ends at its timeout by itself (``asyncio.timeout`` where it
# runs), and its error comes back in the same pass, where ``run()`` may catch it; the
# engine's deadline is the backstop for a callback that blocks its loop and can answer
# nothing, and should not race the callback's own report of the same timeout.
DEADLINE_SLACK_S = 0.1


class PassInterrupted(BaseException):
    """Raised by a program whose code went away mid-pass (isolate died, evicted, reloaded).

    The engine ends the pass without a status change and runs the instance again; an
    attempt that was in flight is then recorded as failed (``WorkflowInternalError``).
    A BaseException so tenant code's ``except Exception`` cannot swallow it.
    """


class PassParked(BaseException):
    """Raised by a program whose code cannot load now (a syntax or import error).

    The instance waits, neither errored nor retried, until ``Engine.unpark()`` (called
    when the code loads again) or the next engine start.
    """


class StepLimitError(Exception):
    """An instance asked for more ``step.do`` calls than its workflow allows."""


class Pass:
    """The ``StepHost`` for one pass; ``Engine`` drives its task."""

    def __init__(self, engine: Engine, st: InstanceState, workflow: Workflow) -> None:
        self.engine = engine
        self.st = st
        self.workflow = workflow
        self.compatibility_date = workflow.compatibility_date
        self.task: asyncio.Task[Any] | None = None
        self.known = set(st.steps)  # journaled at pass start, for divergence
        self.requested: set[str] = set()
        self.replayed: list[str] = []
        self.ran: list[str] = []
        self.inflight: set[str] = set()
        # Attempts answered ("run", ...) whose callback has not reported ``began`` yet:
        # key -> (attempt n, facts of the attempt fact, timeout ms). Nothing is journaled
        # for them: an attempt that never began consumes no retry.
        self._starting: dict[str, tuple[int, dict[str, Any], int]] = {}
        # Attempts the engine ended at their timeout; a late do_end of theirs is stale.
        self._deadlines: dict[str, asyncio.TimerHandle] = {}
        self.timed_out: set[str] = set()
        # Set by a program whose callbacks run elsewhere (an isolate): called with the
        # step key when the engine ended an attempt at its deadline, so the program can
        # replace a process whose event loop the callback blocks.
        self.on_timeout: Callable[[str], None] | None = None
        self.suspending = False
        self.aborted = False
        self.interrupted = False
        self.interrupt_requested = False
        self._configs: dict[str, StepConfig] = {}
        self.mods = engine.modifiers_for(st)

    @property
    def time(self) -> TimeControl:
        """What this pass skips: the engine's setting and the instance's test modifiers
        (read at each step, so a test may change them while the instance runs)."""
        eng = self.engine
        return eng.time | self.mods.time if self.mods is not None else eng.time

    # -- ending the pass ------------------------------------------------------------
    async def _suspend(self) -> Any:
        """End the pass once no callback is in flight; never returns."""
        self.suspending = True
        self.maybe_cancel()
        await asyncio.get_running_loop().create_future()

    def maybe_cancel(self) -> None:
        if self.suspending and not self.inflight and self.task is not None:
            self.task.cancel()

    def interrupt(self) -> None:
        """End this pass at its next step boundary and run the instance again (new code)."""
        self.interrupt_requested = True

    def _at_boundary(self) -> bool:
        """A pause request, a stopping engine, a reload or a pass already ending (an attempt
        timed out): the pass ends before new work."""
        return (
            self.suspending
            or self.st.status is Status.WAITING_FOR_PAUSE
            or self.engine.stopping
            or self.interrupt_requested
        )

    async def _boundary(self) -> None:
        if self._at_boundary():
            await self._suspend()

    def _config(self, s: StepState) -> StepConfig:
        cfg = self._configs.get(s.key)
        if cfg is None:
            assert s.config is not None
            cfg = self._configs[s.key] = config_from_frozen(s.config)
        return cfg

    # -- step.do --------------------------------------------------------------------
    async def do_begin(
        self, key: str, name: str, count: int, config: Mapping[str, Any] | None
    ) -> DoBegin:
        answer = self.begin_now(key, name, count, config)
        if answer is None:
            answer = await self._begin(key, name, count, config)
        if answer[0] == "run":
            await self.engine.durable()
        return answer

    def begin_now(
        self, key: str, name: str, count: int, config: Mapping[str, Any] | None
    ) -> DoBegin | None:
        """``do_begin``'s answer when finding it needs no waiting; None leaves it to ``do_begin``.

        That is a replayed step's result or error, or the first attempt of a step this
        pass meets for the first time. A ``("run", ...)`` answer may be given once every
        fact recorded so far is durable (``engine.durable()``): a step's callback never
        runs before the results it may depend on are journaled. Nothing is journaled for
        the attempt until its callback reports ``began``. None: a pause, stop or reload
        boundary, a retry, an attempt cut off by a crash, a test modifier or the step
        limit, which ``do_begin`` handles. Raises only before it changes anything (an
        invalid step config).
        """
        st = self.st
        s = st.steps.get(key)
        if s is not None and s.done:
            self.requested.add(key)
            self.replayed.append(key)
            return ("done", s.output) if s.error is None else ("error", s.error)
        if (
            s is not None
            or self.mods is not None
            or self._at_boundary()
            or self._do_count() >= self.workflow.step_limit
            or key in self._starting
        ):
            return None
        cfg = resolve_step_config(config, step=name)
        self.requested.add(key)
        self._configs[key] = cfg
        return self._attempt(key, 1, cfg, {"config": cfg.as_dict(), "name": name, "count": count})

    def grant_first_step(self) -> bool:
        """Whether this pass's first ``step.do`` may begin without asking (``begin_granted``):
        a pass with nothing journaled, no test modifier, no boundary in sight. Its
        ``("run", 1, ...)`` answer is then known in advance, and no fact it could depend
        on exists; the engine learns of the attempt with its ``began``, as it would."""
        return (
            not self.st.steps
            and self.mods is None
            and not self._starting
            and not self._at_boundary()
            and self._do_count() < self.workflow.step_limit
        )

    def begin_granted(
        self, key: str, name: str, count: int, config: Mapping[str, Any] | None
    ) -> bool:
        """The pass's first ``step.do`` began on the grant of ``grant_first_step``: set up
        its attempt as ``begin_now`` does (deadline, ``began`` expected). False if it cannot
        be this pass's first step (a misbehaving isolate)."""
        if self.aborted:
            return True  # the pass ended meanwhile: nothing to record it in
        if self.st.steps or self._starting or self.requested:
            return False
        cfg = resolve_step_config(config, step=name)
        self.requested.add(key)
        self._configs[key] = cfg
        self._attempt(key, 1, cfg, {"config": cfg.as_dict(), "name": name, "count": count})
        return True

    def _do_count(self) -> int:
        """``step.do`` calls so far: journaled ones and first attempts about to begin."""
        return self.st.do_count + sum(1 for k in self._starting if k not in self.st.steps)

    def _attempt(self, key: str, n: int, cfg: StepConfig, facts: dict[str, Any]) -> DoBegin:
        """Attempt ``n`` of step ``key`` may run now: do_begin's ``("run", ...)``.

        Its ``attempt`` fact is recorded by ``began``, when the callback really began.
        """
        self._starting[key] = (n, facts, cfg.timeout_ms)
        self.ran.append(key)
        self.inflight.add(key)
        # The timeout counts from now: a callback may block before it can report beginning.
        self._deadlines[key] = asyncio.get_running_loop().call_later(
            cfg.timeout_ms / 1000 + DEADLINE_SLACK_S, self._deadline, key, n, cfg.timeout_ms
        )
        s = self.st.steps.get(key)
        frozen = s.config if s is not None else None
        return ("run", n, frozen or cfg.as_dict(), cfg.timeout_ms)

    def began(self, key: str, attempt: int) -> None:
        """The callback of an attempt answered ``("run", ...)`` began (its code up to its
        first suspension point ran): journal the attempt.

        A crash from here on cuts an attempt that really ran: recovery counts it as
        failed. Before this, a crash leaves no trace and costs no retry.
        """
        starting = self._starting.get(key)
        if starting is None or starting[0] != attempt or self.aborted:
            return  # not ours to start (a pass that ended, a duplicate)
        s = self._record_attempt(key)
        if s is not None:
            self.engine.faults.attempt_started(self.st, s)

    def _record_attempt(self, key: str, *, inferred: bool = False) -> StepState | None:
        n, facts, _ = self._starting.pop(key)
        if inferred:
            facts = {**facts, "inferred": True}
        self.engine.record(self.st, "attempt", key, {"n": n, **facts})
        s = self.st.steps.get(key)
        if s is None or not self._current(s, n):
            return None  # the engine is (simulating) a dead process: nothing was recorded
        return s

    def callbacks_lost(self) -> None:
        """The process running this pass's callbacks died of its own accord (it exited, or
        was killed for its CPU use). A callback told to run that has not reported
        beginning ran into that (an ``os._exit`` or a spin before its first suspension
        point): journal it as begun, so the next pass counts it as a failed attempt and a
        callback that always kills its process runs out of retries."""
        for key in list(self._starting):
            self._record_attempt(key, inferred=True)

    def _deadline(self, key: str, n: int, timeout_ms: int) -> None:
        """Attempt ``n`` of ``key`` is still running at its timeout: the engine ends it.

        The callback's own ``asyncio.timeout`` normally ends it first; this is for a
        callback that blocks its event loop (``while True: pass``), which can answer
        nothing. The attempt fails with ``WorkflowTimeoutError`` and the retry policy
        applies; the pass ends (the next pass retries, or replays the final error), and
        ``on_timeout`` lets the program replace the blocked process.
        """
        self._deadlines.pop(key, None)
        if self.aborted or key not in self.inflight:
            return
        if key in self._starting:
            # Told to run timeout ms ago and never reported beginning: it blocks (or its
            # isolate is blocked), so it began.
            self._record_attempt(key, inferred=True)
        s = self.st.steps.get(key)
        if s is None or not self._current(s, n):
            return
        self.inflight.discard(key)
        self.timed_out.add(key)
        error = {
            "name": "WorkflowTimeoutError",
            "message": f"Execution timed out after {timeout_ms}ms",
        }
        outcome = self._attempt_failed(s, error, retryable=True)
        self.engine.step_finished(self.st, s)
        if outcome is not None:
            self.interrupt_requested = True  # final: the next pass raises it in run()
        self.suspending = True
        self.maybe_cancel()
        if self.on_timeout is not None:
            self.on_timeout(key)

    @staticmethod
    def _current(s: StepState, n: int) -> bool:
        a = s.open_attempt
        return a is not None and a.n == n

    def _stale(self, key: str, attempt: int) -> StepState | None:
        """The step of a do_end that still counts; None for one the engine already ended
        (timed out) or never started (a dead engine recorded nothing)."""
        self.inflight.discard(key)
        self._starting.pop(key, None)
        handle = self._deadlines.pop(key, None)
        if handle is not None:
            handle.cancel()
        s = self.st.steps.get(key)
        if s is None or key in self.timed_out or not self._current(s, attempt):
            return None
        return s

    def close(self) -> None:
        """The pass ended: stop its attempts' deadlines."""
        for handle in self._deadlines.values():
            handle.cancel()
        self._deadlines.clear()
        self._starting.clear()

    async def _begin(
        self, key: str, name: str, count: int, config: Mapping[str, Any] | None
    ) -> DoBegin:
        """``do_begin`` for what ``begin_now`` leaves: boundaries, retries, modifiers, limits."""
        st, eng = self.st, self.engine
        self.requested.add(key)
        await self._boundary()
        s = st.steps.get(key)
        first: dict[str, Any] = {}
        if s is None:
            if self._do_count() >= self.workflow.step_limit:
                raise StepLimitError(
                    f"instance {st.id!r} reached its limit of {self.workflow.step_limit} "
                    f"step.do calls at step {name!r}; raise workflows[].limits.steps in the config"
                )
            cfg = resolve_step_config(config, step=name)
            self._configs[key] = cfg
            first = {"config": cfg.as_dict(), "name": name, "count": count}
        else:
            cfg = self._config(s)
            if s.open_attempt is not None and key not in self.inflight:
                # Cut off by a crash, an eviction or a stop: a failed attempt.
                outcome = self._attempt_failed(s, INTERNAL_ERROR, retryable=True)
                if outcome is not None:
                    return outcome
            late = s.wake_at is not None and s.wake_at > eng.clock.now_ms()
            if late and not self.time.skips_retry(name, count):
                await self._suspend()  # the retry delay has not passed yet
        mock = self.mods.plan(name, count, cfg.timeout_ms) if self.mods is not None else None
        n = (len(s.attempts) if s is not None else 0) + 1
        if key in self._starting:  # asked again before its callback began (a duplicate key)
            raise RuntimeError(f"step {name!r} (call {count}) is already running in this pass")
        if mock is None:
            return self._attempt(key, n, cfg, first)
        # A test modifier answers; the callback does not run.
        eng.record(st, "attempt", key, {"n": n, **first, "mocked": True})
        self.ran.append(key)
        if mock[0] == "result":
            eng.record(st, "attempt_end", key, {"n": n, "ok": True, "output": mock[1]})
            return ("done", mock[1])
        outcome = self._attempt_failed(st.steps[key], mock[1], retryable=True)
        if outcome is None:
            await self._suspend()
        assert outcome is not None
        return outcome

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
        if ok:
            return self.do_done(key, attempt, value)
        st, eng = self.st, self.engine
        s = self._stale(key, attempt)
        if s is None:
            await self._suspend()  # the engine ended it at its deadline: this pass is over
        assert s is not None and error is not None
        if delay_ms is not None and (isinstance(delay_ms, bool) or delay_ms < 0):
            delay_ms = None  # not a delay: the policy's own (an isolate's bad report)
        outcome = self._attempt_failed(s, error, retryable, delay_ms)
        eng.step_finished(st, s)
        if outcome is None:
            await self._suspend()
        self.maybe_cancel()
        assert outcome is not None
        return outcome

    def do_done(self, key: str, attempt: int, value: Any) -> Outcome:
        """A successful attempt's result. Never waits, so an isolate sends it one way."""
        st, eng = self.st, self.engine
        s = self._stale(key, attempt)
        if s is None:
            # Too late (the engine timed the attempt out) or a dead engine: not journaled.
            # The pass is ending; its next step call ends it.
            self.maybe_cancel()
            return ("done", value)
        eng.faults.before_result(st, s)
        eng.record(st, "attempt_end", key, {"n": attempt, "ok": True, "output": value}, lazy=True)
        eng.faults.after_result(st, s)
        eng.step_finished(st, s)
        self.maybe_cancel()
        return ("done", value)

    def _attempt_failed(
        self, s: StepState, error: ErrorDict, retryable: bool, base_ms: int | None = None
    ) -> Outcome | None:
        """Record a failed attempt; the final error, or None when a retry is due later.
        ``base_ms``: a dynamic delay's answer for this attempt (else the policy's delay;
        a dynamic policy with no answer, e.g. an attempt cut off by a crash, uses 0)."""
        eng = self.engine
        policy = self._config(s).retries
        made = len(s.attempts)
        if retryable and made <= policy.limit:
            skip = self.time.skips_retry(s.name, s.count)
            delay = 0 if skip else policy.delay_before_retry(made, base_ms)
            eng.record(
                self.st,
                "attempt_end",
                s.key,
                {
                    "n": made,
                    "ok": False,
                    "error": error,
                    "retry_at": eng.clock.now_ms() + delay,
                },
            )
            return None
        eng.record(
            self.st, "attempt_end", s.key, {"n": made, "ok": False, "error": error, "final": True}
        )
        return ("error", error)

    # -- sleep ----------------------------------------------------------------------
    async def sleep(self, key: str, name: str, count: int, ms: int, until: int | None) -> None:
        st, eng = self.st, self.engine
        self.requested.add(key)
        s = st.steps.get(key)
        if s is not None and s.done:
            self.replayed.append(key)
            return
        await self._boundary()
        now = eng.clock.now_ms()
        skip = self.time.skips_sleep(name, count)
        if s is None:
            target = until if until is not None else now + ms
            natural_end = target <= now
            eng.record(
                st,
                "sleep",
                key,
                {"name": name, "count": count, "ms": ms, "until": now if skip else target},
            )
            self.ran.append(key)
            if natural_end:  # sleep_until a past time, or a zero sleep: no wait at all
                eng.record(st, "sleep_done", key, {})
                return
            await self._suspend()  # every real (or skipped) sleep hibernates
        assert s is not None and s.wake_at is not None
        if skip or s.wake_at <= now:
            eng.record(st, "sleep_done", key, {})
            return
        await self._suspend()

    # -- wait_for_event -------------------------------------------------------------
    async def wait_for_event(
        self, key: str, name: str, count: int, type_: str, timeout_ms: int
    ) -> Outcome:
        st, eng = self.st, self.engine
        self.requested.add(key)
        s = st.steps.get(key)
        if s is not None and s.done:
            self.replayed.append(key)
            return ("done", s.output) if s.error is None else ("error", s.error)
        await self._boundary()
        now = eng.clock.now_ms()
        if s is None:
            eng.record(
                st,
                "wait",
                key,
                {"name": name, "count": count, "type": type_, "deadline": now + timeout_ms},
            )
            self.ran.append(key)
            s = st.steps[key]
        deadline = s.wake_at
        if self.mods is not None:
            if self.mods.times_out_event(name, count):
                deadline = now  # forced by a test: the deadline is now
            mocked = self.mods.take_event(type_)
            if mocked is not None:
                eng.record(st, "event", None, {"type": type_, "payload": mocked["payload"]})
        ev = st.oldest_event(type_)
        if ev is not None:
            output = {"payload": ev.payload, "timestamp": iso_ms(ev.ts), "type": ev.type}
            eng.record(st, "wait_done", key, {"event": ev.seq, "output": output})
            return ("done", output)
        assert deadline is not None
        if deadline <= now:
            err = {
                "name": "WorkflowTimeoutError",
                "message": f"Waiting for event '{type_}' timed out after {timeout_ms}ms",
            }
            eng.record(st, "wait_done", key, {"error": err})
            return ("error", err)
        await self._suspend()
        raise AssertionError("unreachable")

    # -- end of pass ------------------------------------------------------------------
    def divergence(self) -> tuple[list[str], list[str]] | None:
        """Journaled steps this pass skipped while new ones ran instead, if any."""
        if not self.ran:
            return None
        missing = [k for k in self.known if k not in self.requested]
        if not missing:
            return None
        new = [k for k in self.ran if k not in self.known]
        return (sorted(missing), new) if new else None
