"""Run slots, timers and run passes: when an instance runs, and what follows.

``react`` is the one place that decides what a status change sets in motion (a pass
to start, timers to drop, a pass to stop); ``_drive``'s end is the one place that
decides what follows a pass (timers to arm, a slot to hand on). ``_states`` decides
whether a change is allowed; this module never compares statuses for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from dynwf.engine._model import ErrorDict, InstanceState, StepState
from dynwf.engine._pass import Pass, PassInterrupted, PassParked
from dynwf.engine._rules import json_value
from dynwf.engine._states import FINISHED, Event, Status
from dynwf.engine._step import error_to_dict, event_for
from dynwf.errors import JournalCommitError, PayloadError
from dynwf.workers.workflows import NonRetryableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from dynwf.engine._engine import Engine

log = logging.getLogger("dynwf.engine")


class Scheduler:
    """Who runs now (``running``), who waits for a slot (``runnable``), and the timers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.running: dict[str, Pass] = {}
        self.runnable: deque[str] = deque()
        self.timers: list[tuple[int, int, str]] = []
        # When finished instances with a retention expire: (at, uid).
        self.expiries: list[tuple[int, str]] = []
        # An instance's timers are valid while their generation is its current one.
        self.timer_gen: dict[str, int] = {}
        self.timer_changed = asyncio.Event()
        self.timer_task: asyncio.Task[None] | None = None
        self.parked: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.delayed: set[asyncio.TimerHandle] = set()
        self.reruns = 0
        self.idle = asyncio.Event()
        self._interruptions: dict[str, int] = {}
        self._after_pass: dict[str, list[Callable[[], object]]] = {}

    def start(self) -> None:
        self.timer_task = asyncio.create_task(self._timer_loop(), name="dynwf-timers")

    async def stop_timers(self) -> None:
        for handle in self.delayed:
            handle.cancel()
        if self.timer_task is not None:
            self.timer_task.cancel()
            await asyncio.gather(self.timer_task, return_exceptions=True)

    def reset(self) -> None:
        """Forget every slot, timer and park (a simulated crash); the timer task goes on."""
        self.running.clear()
        self.runnable.clear()
        self.timers.clear()
        self.expiries.clear()
        self.timer_gen.clear()
        self.parked.clear()
        self.reruns = 0
        self._after_pass.clear()

    def abort_all(self) -> None:
        """Cancel every pass at once (a failed commit, a simulated crash)."""
        for p in list(self.running.values()):
            p.aborted = True
            if p.task is not None:
                p.task.cancel()

    # -- what follows a status change -------------------------------------------------
    def react(self, st: InstanceState, event: Event, old: Status, new: Status) -> None:
        """Set in motion what the change ``old`` -> ``new`` (by ``event``) calls for."""
        if new is Status.TERMINATED or event is Event.RESTART:
            self._abort(st)
        elif new is Status.PAUSED and old is not Status.PAUSED:
            self.drop_timers(st)
        if new is Status.QUEUED:
            self.schedule(st)
        elif new in FINISHED and old is not new:
            self.expire_later(st)
        elif new is Status.WAITING and event is Event.RECOVER:
            if st.pending_wake() is None and not st.waiting_types():
                self.wake(st)  # parked on a code error before the restart: try again
            else:
                self.arm(st)

    def expire_later(self, st: InstanceState) -> None:
        """A finished instance with a retention: expire it when its retention ends."""
        at = st.expires_at
        if at is None:
            return
        heapq.heappush(self.expiries, (at, st.uid))
        if self.expiries[0][1] == st.uid:
            self.timer_changed.set()

    def drop_timers(self, st: InstanceState) -> None:
        self.timer_gen[st.uid] = self.timer_gen.get(st.uid, 0) + 1

    def _abort(self, st: InstanceState) -> None:
        p = self.running.get(st.uid)
        if p is not None and p.task is not None:
            p.aborted = True
            p.task.cancel()
        self.drop_timers(st)

    def forget(self, st: InstanceState) -> None:
        """A deleted instance: stop it and drop every trace of it here."""
        self._abort(st)
        self.parked.discard(st.uid)
        self._interruptions.pop(st.uid, None)
        self._after_pass.pop(st.uid, None)
        with contextlib.suppress(ValueError):
            self.runnable.remove(st.uid)
        self.update_idle()

    # -- slots --------------------------------------------------------------------------
    def schedule(self, st: InstanceState) -> None:
        eng = self.engine
        if eng.stopping or not eng.execute or st.uid in self.running:
            return
        if not eng.drives_instance(st):
            return
        if len(self.running) < eng.max_running and self._has_room(st):
            self._start_pass(st)
        elif st.uid not in self.runnable:
            self.runnable.append(st.uid)
        self.update_idle()

    def _has_room(self, st: InstanceState) -> bool:
        """Its workflow runs fewer instances than its concurrency limit (if it has one)."""
        wf = self.engine.workflows.get(st.workflow)
        limit = wf.concurrency_limit if wf is not None else None
        if limit is None:
            return True
        return sum(1 for p in self.running.values() if p.st.workflow == st.workflow) < limit

    def _next_runnable(self) -> None:
        eng = self.engine
        waiting: list[str] = []  # their workflow is at its concurrency limit: they stay queued
        while self.runnable and len(self.running) < eng.max_running:
            uid = self.runnable.popleft()
            st = eng.find(uid)
            # QUEUED, or RUNNING: an interrupted pass to run again
            runs = st is not None and st.status in (Status.QUEUED, Status.RUNNING)
            if not runs or uid in self.running:
                continue
            assert st is not None
            if self._has_room(st):
                self._start_pass(st)
            else:
                waiting.append(uid)
        self.runnable.extendleft(reversed(waiting))

    def _start_pass(self, st: InstanceState) -> None:
        wf = self.engine.workflows.get(st.workflow)
        if wf is None:
            log.warning(
                "instance %s belongs to unregistered workflow %r; left as is", st.id, st.workflow
            )
            return
        p = Pass(self.engine, st, wf)
        self.running[st.uid] = p
        task = asyncio.create_task(self._drive(p), name=f"dynwf-pass-{st.id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- timers -------------------------------------------------------------------------
    def wake(self, st: InstanceState) -> None:
        self.drop_timers(st)
        if st.uid in self.parked:
            return  # its code does not load: it waits for unpark(), not for timers or events
        if st.status is Status.WAITING:
            self.engine.set_status(st, Event.WAKE)

    def arm(self, st: InstanceState) -> None:
        """After a pass suspends: wake at the earliest timer, or now if an event is waiting."""
        if any(st.oldest_event(t) for t in st.waiting_types()):
            self.wake(st)
            return
        at = st.pending_wake()
        if at is None:
            return  # waits for an event with no deadline
        now = self.engine.clock.now_ms()
        if at > now and any(self._skips_recorded(s) for s in st.steps.values()):
            at = now  # a sleep or retry delay journaled before the skip was on ends now too
        gen = self.timer_gen.get(st.uid, 0) + 1
        self.timer_gen[st.uid] = gen
        heapq.heappush(self.timers, (at, gen, st.uid))
        if self.timers[0][2] == st.uid:
            self.timer_changed.set()

    def _skips_recorded(self, s: StepState) -> bool:
        if s.done or s.wake_at is None:
            return False
        if s.kind == "sleep":
            return self.engine.time.skips_sleep(s.name, s.count)
        return s.kind == "do" and self.engine.time.skips_retry(s.name, s.count)

    async def _timer_loop(self) -> None:
        clock = self.engine.clock
        while True:
            now = clock.now_ms()
            while self.timers and self.timers[0][0] <= now:
                _, gen, uid = heapq.heappop(self.timers)
                st = self.engine.find(uid)
                if self.timer_gen.get(uid) == gen and st is not None:
                    self.wake(st)
            while self.expiries and self.expiries[0][0] <= now:
                _, uid = heapq.heappop(self.expiries)
                st = self.engine.find(uid)
                if st is not None:
                    self.engine.expire(st)  # a no-op if it was restarted meanwhile
            self.update_idle()
            due = [heap[0][0] for heap in (self.timers, self.expiries) if heap]
            delay = min(due) - now if due else None
            self.timer_changed.clear()
            await clock.wait(delay, self.timer_changed)

    # -- interruptions -------------------------------------------------------------------
    def unpark(self) -> int:
        parked, self.parked = self.parked, set()
        for uid in parked:
            st = self.engine.find(uid)
            if st is not None and st.status is Status.WAITING:
                self.wake(st)
        return len(parked)

    def interrupt(self, uid: str) -> bool:
        p = self.running.get(uid)
        if p is None:
            return False
        p.interrupt()
        return True

    def after_pass(self, uid: str, fn: Callable[[], object]) -> bool:
        if not self.interrupt(uid):
            return False
        self._after_pass.setdefault(uid, []).append(fn)
        return True

    def step_finished(self, st: InstanceState) -> None:
        self._interruptions.pop(st.uid, None)

    def _rerun_later(self, st: InstanceState) -> None:
        """Run an interrupted instance again, backing off if its code keeps failing."""
        n = self._interruptions.get(st.uid, 0)
        self._interruptions[st.uid] = n + 1
        delay = min(0.02 * 2**n, 5.0)

        def again() -> None:
            self.reruns -= 1
            if st.status is Status.WAITING_FOR_PAUSE:
                self.engine.set_status(st, Event.PAUSED)
            elif st.status is Status.RUNNING:
                self.schedule(st)
            self.update_idle()

        self.reruns += 1
        self.delayed.add(asyncio.get_running_loop().call_later(delay, again))

    # -- idleness -------------------------------------------------------------------------
    def update_idle(self) -> None:
        eng = self.engine
        busy = (
            self.running
            or self.runnable
            or self.reruns
            or eng.busy
            or (self.timers and self.timers[0][0] <= eng.clock.now_ms())
            or (self.expiries and self.expiries[0][0] <= eng.clock.now_ms())
        )
        if busy:
            self.idle.clear()
        else:
            self.idle.set()

    async def wait_until_idle(self) -> None:
        while True:
            self.update_idle()
            await self.idle.wait()
            await asyncio.sleep(0)
            self.update_idle()
            if self.idle.is_set():
                return

    # -- driving a pass ----------------------------------------------------------------
    async def _drive(self, p: Pass) -> None:
        eng = self.engine
        st, wf = p.st, p.workflow
        try:
            if st.status is not Status.RUNNING:
                eng.set_status(st, Event.START)
            event = event_for(st.params, st.created, st.id, st.workflow, st.schedule)
            p.task = asyncio.create_task(wf.program.run(event, p))
            try:
                output = await p.task
            except PassParked as exc:
                if p.aborted:
                    return
                self._pass_facts(p)
                if st.status is Status.RUNNING:
                    eng.set_status(st, Event.SUSPEND)
                eng.record(st, "parked", None, {"reason": str(exc)})  # for inspect
                self.parked.add(st.uid)
                self.drop_timers(st)
                log.warning("instance %s waits until its code loads again: %s", st.id, exc)
                eng.emit("parked", (st, str(exc)))
            except PassInterrupted as exc:
                if p.aborted:
                    return
                p.interrupted = True
                self._pass_facts(p)
                log.info("pass of %s interrupted (%s); it will run again", st.id, exc)
            except asyncio.CancelledError:
                if p.aborted or not p.suspending:
                    if not p.aborted:
                        raise
                    return
                self._end_suspended(p)
            except BaseException as exc:
                if p.aborted:
                    return
                if p.suspending:
                    self._end_suspended(p)
                else:
                    self._end(p, Event.FAIL, error=_error_of(exc))
            else:
                if p.aborted:
                    return
                if p.suspending:
                    self._end_suspended(p)
                else:
                    try:
                        clean, _ = json_value(output, what=f"the output of instance {st.id!r}")
                    except PayloadError as exc:
                        self._end(p, Event.FAIL, error={"name": "TypeError", "message": str(exc)})
                    else:
                        self._end(p, Event.COMPLETE, output=clean)
            with contextlib.suppress(JournalCommitError):  # fail-stop: the host reports it
                await eng.durable()
        finally:
            p.task = None
            p.close()
            if self.running.get(st.uid) is p:
                del self.running[st.uid]
            self._pass_ended(p)

    def _pass_ended(self, p: Pass) -> None:
        """What follows a pass: its hooks, its timers or its next pass, then a free slot."""
        st = p.st
        for fn in self._after_pass.pop(st.uid, ()):
            try:
                fn()
            except Exception:
                log.exception("after-pass hook of %s failed", st.id)
        if not p.aborted and st.status is Status.WAITING and st.uid not in self.parked:
            self.arm(st)
        elif st.status is Status.QUEUED and not self.engine.stopping and not st.deleted:
            # woken (event, resume, restart) while this pass was still closing
            self.schedule(st)
        elif p.interrupted and st.status in (Status.RUNNING, Status.WAITING_FOR_PAUSE):
            self._rerun_later(st)
        self._next_runnable()
        self.update_idle()

    def _pass_facts(self, p: Pass) -> None:
        eng = self.engine
        st = p.st
        div = p.divergence()
        if div is not None:
            # Once per (instance, journaled step): a name that changes on every pass
            # (random, time-based) would otherwise name all earlier steps again each pass.
            told = {key for w in st.warnings for key in w.missing}
            missing = [key for key in div[0] if key not in told]
            if missing:
                ran = div[1]
                message = (
                    f"replay diverged in instance {st.id!r} of workflow {st.workflow!r}: "
                    f"journaled step(s) {', '.join(missing)} were not requested while "
                    f"{', '.join(ran)} ran instead; code outside steps must be deterministic"
                )
                eng.record(
                    st, "warning", None, {"message": message, "missing": missing, "ran": ran}
                )
                # Listeners (`dynwf dev`) print it and the journal keeps it for `dynwf run`,
                # `dynwf inspect` and the test API; a WARNING record would print it twice.
                log.info("%s", message)
                eng.emit("warning", message)
        if p.replayed:
            eng.record(st, "pass", None, {"replayed": p.replayed})

    def _end_suspended(self, p: Pass) -> None:
        st = p.st
        self._pass_facts(p)
        if self.engine.stopping and st.status is Status.RUNNING:
            return  # left running: recovery re-queues it
        if p.interrupt_requested and st.status is Status.RUNNING:
            p.interrupted = True  # reloaded code: run again at once, from the top
            self._interruptions.pop(st.uid, None)
            return
        self.engine.set_status(st, Event.SUSPEND)
        self.engine.emit("pass", (st, "suspended"))

    def _end(self, p: Pass, event: Event, **extra: Any) -> None:
        self._pass_facts(p)
        self.engine.set_status(p.st, event, **extra)
        self.engine.emit("pass", (p.st, p.st.status.value))


def _error_of(exc: BaseException) -> ErrorDict:
    if isinstance(exc, NonRetryableError):
        return {"name": "NonRetryableError", "message": str(exc)}
    return error_to_dict(exc)
