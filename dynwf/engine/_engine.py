"""The engine: registered workflows, the instance table in memory, commits and scheduling.

Every change of state is a fact: ``record`` applies it to the instance and queues
it for the journal; a commit is scheduled on the next loop iteration, so all the
facts the ready instances produce in one iteration share one commit (group
commit) while a lone instance still commits once per step with no added delay.
Code that must not go on before its facts are durable awaits ``durable()``.

A commit that fails stops the engine (fail-stop): the facts of that commit and any
recorded after it are dropped, every ``durable()`` raises ``JournalCommitError``, no
pass runs on, and listeners hear ``("fatal", error)`` so the host can exit. The
journal then holds exactly what was acknowledged, and a restart recovers from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dynwf.engine._clock import Clock, SystemClock
from dynwf.engine._model import ErrorDict, InstanceState, Row, StepState, fold
from dynwf.engine._modify import Modifiers
from dynwf.engine._pass import Pass, PassInterrupted, PassParked
from dynwf.engine._rules import (
    DEFAULT_STEP_LIMIT,
    check_event_type,
    check_instance_id,
    check_workflow_name,
    json_value,
)
from dynwf.engine._states import FINISHED, Event, Status, transition
from dynwf.engine._step import EventDict, Step, StepHost, error_to_dict, event_for
from dynwf.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    JournalCommitError,
    JournalError,
    PayloadError,
    ValidationError,
    WorkflowNotFoundError,
)
from dynwf.journal import Durability, Journal, encode
from dynwf.workers.workflows import NonRetryableError

log = logging.getLogger("dynwf.engine")
# How long a step's result may wait for the next step's attempt fact to share its
# commit (see Engine.record). Never longer than this, and never past the next callback.
LAZY_COMMIT_S = 0.005


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
    compatibility_date: str = "2026-04-01"
    step_limit: int = DEFAULT_STEP_LIMIT


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


@dataclass(slots=True)
class _Slots:
    running: dict[str, Pass] = field(default_factory=dict)
    runnable: deque[str] = field(default_factory=deque)


class Engine:
    """A durable Workflows engine over one journal file (or memory, for tests)."""

    def __init__(
        self,
        journal: str | Path | None = None,
        *,
        clock: Clock | None = None,
        max_running: int = 1000,
        time: TimeControl | None = None,
        faults: Faults | None = None,
        durability: Durability = "process",
        execute: bool = True,
        accept_data_loss: bool = False,
    ) -> None:
        if max_running < 1:
            raise ValidationError(f"max_running {max_running!r} must be at least 1")
        self.journal_path = Path(journal) if journal is not None else None
        self.durability: Durability = durability
        self.accept_data_loss = accept_data_loss
        # execute=False: a steering engine (pause/resume/terminate/send-event from the
        # shell) that records facts but never runs a pass; a `dynwf dev` picks them up.
        self.execute = execute
        # Only instances this accepts are recovered and run (``dynwf run`` drives its
        # own instance and leaves every other one of the journal as it finds it).
        self.drives: Callable[[InstanceState], bool] | None = None
        self.clock: Clock = clock or SystemClock()
        self.max_running = max_running
        self.time = time or TimeControl()
        self.faults = faults or Faults()
        self.workflows: dict[str, Workflow] = {}
        self.listeners: list[Listener] = []
        self.stopping = False
        self._journal: Journal | None = None
        self._instances: dict[str, InstanceState] = {}
        self._index: dict[tuple[str, str, str], str] = {}
        self._slots = _Slots()
        self._timers: list[tuple[int, int, str]] = []
        self._timer_gen: dict[str, int] = {}
        self._timer_changed = asyncio.Event()
        self._timer_task: asyncio.Task[None] | None = None
        self._pending: list[Row] = []
        # Called with None (or the error) once the next commit is made: ``when_durable``.
        self._on_commit: list[Callable[[BaseException | None], None]] = []
        # The scheduled flush: at once (call_soon) or, for a step's result, a moment
        # later, so the next step's attempt fact shares its commit (see ``record``).
        self._flush_handle: asyncio.Handle | None = None
        self._flush_lazy = False
        self._seq = 0
        self._idle = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # durable() waiters of a frozen engine (a simulated crash), cancelled by it
        self._dead_waiters: list[asyncio.Future[None]] = []
        self._interruptions: dict[str, int] = {}
        self._after_pass: dict[str, list[Callable[[], object]]] = {}
        self._delayed: set[asyncio.TimerHandle] = set()
        self._reruns = 0
        self._parked: set[str] = set()
        self._modifiers: dict[tuple[str, str | None, str | None], Modifiers] = {}
        self._modifier_since: dict[str, int] = {}
        self._frozen = False  # a simulated crash is under way: nothing reaches the journal
        self._background: set[asyncio.Task[None]] = set()
        self.crashes = 0
        self.fatal: BaseException | None = None

    # -- registry ------------------------------------------------------------------
    def register(self, workflow: Workflow) -> Workflow:
        check_workflow_name(workflow.name)
        if workflow.name in self.workflows:
            raise ValidationError(f"workflow {workflow.name!r} is registered twice")
        self.workflows[workflow.name] = workflow
        return workflow

    def workflow_for_binding(self, binding: str) -> Workflow:
        for wf in self.workflows.values():
            if wf.binding == binding:
                return wf
        known = ", ".join(sorted(w.binding for w in self.workflows.values())) or "none"
        raise WorkflowNotFoundError(f"no workflow is bound as {binding!r} (bindings: {known})")

    def workflow(self, name: str) -> Workflow:
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise WorkflowNotFoundError(
                f"no workflow named {name!r} (workflows: {known})"
            ) from None

    def binding(self, name: str, *, scope: str = "") -> WorkflowBinding:
        """The ``env.<name>`` object tenant code uses; ``name`` is a binding or workflow name."""
        from dynwf.engine._binding import WorkflowBinding

        wf = self.workflows.get(name) or self.workflow_for_binding(name)
        return WorkflowBinding(self, wf.name, scope)

    # -- simulated crash (the test API's crash_at) ----------------------------------------
    def crash_soon(self) -> None:
        """Behave as if the process died now: nothing more reaches the journal, and a
        moment later the engine forgets its memory and recovers from the journal, as a
        fresh process would. The in-process twin of a SIGKILL, for tests."""
        if self._frozen:
            return
        self._frozen = True
        task = asyncio.get_running_loop().create_task(self._recover_after_crash())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _recover_after_crash(self) -> None:
        await asyncio.sleep(0)
        for p in list(self._slots.running.values()):
            p.aborted = True
            if p.task is not None:
                p.task.cancel()
        while self._tasks:
            # whatever waits for a commit of the dead engine is cancelled, however often
            # a pass being torn down asks again
            for waiter in self._dead_waiters:
                waiter.cancel()
            self._dead_waiters.clear()
            await asyncio.wait(set(self._tasks), timeout=0.05)
        for handle in self._delayed:
            handle.cancel()
        self._pending.clear()
        self._after_pass.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        waiting, self._on_commit = self._on_commit, []
        for callback in waiting:  # as a dead process's callers would: nobody waits on
            callback(None)
        self._instances.clear()
        self._index.clear()
        self._slots = _Slots()
        self._timers.clear()
        self._timer_gen.clear()
        self._parked.clear()
        self._reruns = 0
        self.crashes += 1
        self._frozen = False
        assert self._journal is not None
        for row in self._journal.instances():
            self._index[(row.workflow, row.scope, row.id)] = row.uid
        for uid, rows in self._journal.unfinished_facts().items():
            st = fold(uid, rows)
            self._instances[uid] = st
            self._recover(st)
        self._timer_changed.set()
        self._update_idle()

    # -- test modifiers ----------------------------------------------------------------
    def modify(
        self, workflow: str, id: str | None = None, *, scope: str | None = None
    ) -> Modifiers:
        """Modifiers for instance ``id`` (any scope unless given), or, with no id, for
        every instance of ``workflow`` created from now on."""
        self.workflow(workflow)
        mods = Modifiers()
        self._modifiers[(workflow, scope, id)] = mods
        if id is None:
            self._modifier_since[workflow] = self.clock.now_ms()
        return mods

    def modifiers_for(self, st: InstanceState) -> Modifiers | None:
        if not self._modifiers:
            return None
        for key in ((st.workflow, st.scope, st.id), (st.workflow, None, st.id)):
            if key in self._modifiers:
                return self._modifiers[key]
        wide = self._modifiers.get((st.workflow, None, None))
        if wide is not None and st.created >= self._modifier_since.get(st.workflow, 0):
            return wide.for_instance(st.uid)
        return None

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Open the journal and recover every unfinished instance."""
        self.stopping = False
        self.fatal = None
        self._journal = Journal(
            self.journal_path, durability=self.durability, accept_data_loss=self.accept_data_loss
        )
        self._seq = self._journal.next_seq()
        for row in self._journal.instances():
            self._index[(row.workflow, row.scope, row.id)] = row.uid
        recovered = []
        for uid, rows in self._journal.unfinished_facts().items():
            st = fold(uid, rows)
            self._instances[uid] = st
            self._recover(st)
            recovered.append(st)
        self._timer_task = asyncio.create_task(self._timer_loop(), name="dynwf-timers")
        if recovered and self.execute:
            self.emit("recovered", [st for st in recovered if self._drives(st)])
        self._update_idle()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop passes at their next step boundary (then cancel after ``grace`` s), commit, close."""
        if self._journal is None:
            return
        self.stopping = True
        for p in list(self._slots.running.values()):
            if not p.inflight and p.task is not None:
                p.aborted = True
                p.task.cancel()
        for bg in list(self._background):
            await asyncio.gather(bg, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for p in list(self._slots.running.values()):
                p.aborted = True
                if p.task is not None:
                    p.task.cancel()
            if pending:
                await asyncio.wait(pending)
        for handle in self._delayed:
            handle.cancel()
        if self._timer_task is not None:
            self._timer_task.cancel()
            await asyncio.gather(self._timer_task, return_exceptions=True)
        self.commit_now()
        journal, self._journal = self._journal, None
        try:
            journal.close()
        except JournalError:
            if not self.failed:
                raise  # after a failed commit, that failure is the one to report

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _drives(self, st: InstanceState) -> bool:
        return self.drives is None or self.drives(st)

    def _recover(self, st: InstanceState) -> None:
        if not self.execute or not self._drives(st):
            return  # left exactly as journaled, for whichever engine drives it
        before = st.status
        self.set_status(st, Event.RECOVER)
        if st.status is Status.QUEUED:
            self._schedule(st)
        elif st.status is Status.WAITING:
            if st.pending_wake() is None and not st.waiting_types():
                self._wake(st)  # parked on a code error before the restart: try again
            else:
                self._arm(st)
        log.debug("recovered %s (%s -> %s)", st.id, before, st.status)

    # -- facts and commits -----------------------------------------------------------
    def record(
        self,
        st: InstanceState,
        kind: str,
        step: str | None,
        data: dict[str, Any],
        *,
        lazy: bool = False,
    ) -> None:
        """Apply a fact to the instance and queue it for the next commit.

        The commit runs at the end of this event-loop turn, shared by every fact
        recorded in it (group commit). A ``lazy`` fact (a step's result) may wait up
        to ``LAZY_COMMIT_S`` for company: the result only has to be durable before the
        next step's callback runs, and that step's ``attempt`` fact, recorded a
        round trip later when the tenant runs in an isolate, then shares its commit.
        ``durable()`` and any non-lazy fact bring a waiting commit forward.
        """
        if self._frozen or self.failed:
            return  # the (simulated) process is dead, or a commit failed: this fact is lost
        seq = self._seq
        self._seq += 1
        ts = self.clock.now_ms()
        st.apply(seq, ts, kind, step, data)
        self._pending.append((st.uid, seq, ts, kind, step, encode(data)))
        loop = asyncio.get_running_loop()
        if self._flush_handle is None:  # no commit scheduled yet
            if lazy:
                self._flush_handle = loop.call_later(LAZY_COMMIT_S, self._flush)
                self._flush_lazy = True
            else:
                self._flush_handle = loop.call_soon(self._flush)
        elif self._flush_lazy and not lazy:
            self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        self._flush_lazy = False

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # commit_now() ran it before its turn
            self._flush_handle = None
        self._flush_lazy = False
        rows, self._pending = self._pending, []
        callbacks, self._on_commit = self._on_commit, []
        error: BaseException | None = None
        if self.failed:
            error = self.fatal
        elif rows:
            try:
                if self._journal is None:
                    raise RuntimeError("the engine is stopped")
                self._journal.append(rows)
            except BaseException as exc:
                error = self._fail_stop(exc)
        for callback in callbacks:
            try:
                callback(error)
            except Exception:
                log.exception("a commit callback failed")

    @property
    def failed(self) -> bool:
        """A journal commit failed: the engine acknowledges and runs nothing more."""
        return isinstance(self.fatal, JournalCommitError)

    def _fail_stop(self, exc: BaseException) -> JournalCommitError:
        """Stop after a failed commit: nothing recorded from now on reaches the journal
        (facts applied in memory but not committed die with this process), no pass goes
        on, and whoever waits for durability gets the error."""
        where = self.journal_path or "the in-memory journal"
        text = (
            str(exc) if str(exc).startswith("a commit to") else f"a commit to {where} failed: {exc}"
        )
        error = JournalCommitError(
            f"{text}; the engine stopped there (nothing after its last good commit was "
            "acknowledged or run): fix the cause (a full disk? a file size limit?), then "
            "start again: unfinished instances resume from what the journal holds"
        )
        error.__cause__ = exc
        self.fatal = error
        self.stopping = True
        log.debug("%s", error)  # the host reports it: one line, from durable() or "fatal"
        for p in list(self._slots.running.values()):
            p.aborted = True
            if p.task is not None:
                p.task.cancel()
        for handle in self._delayed:
            handle.cancel()
        if self._timer_task is not None:
            self._timer_task.cancel()
        self.emit("fatal", error)
        return error

    @property
    def passes_running(self) -> int:
        """How many instances have a pass (a ``run()`` call) in progress now."""
        return len(self._slots.running)

    @property
    def commits(self) -> int:
        """Journal commits made since ``start()`` (each is one transaction)."""
        return self._journal.commits if self._journal is not None else 0

    def commit_now(self) -> None:
        """Commit what is queued immediately (used before a deliberate crash and at stop)."""
        if self._pending:
            self._flush()

    async def durable(self) -> None:
        """Return once every fact recorded so far is committed (raise if that fails)."""
        if isinstance(self.fatal, JournalCommitError):
            raise self.fatal
        if self._flush_handle is None and not self._frozen:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._frozen:
            # A dead process answers nothing: the simulated crash cancels this waiter.
            self._dead_waiters.append(waiter)
            await waiter
            return

        def committed(error: BaseException | None) -> None:
            if waiter.done():  # its task was cancelled meanwhile
                return
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

        self.when_durable(committed)
        await waiter

    def when_durable(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(None)`` once every fact recorded so far is committed (now, if it
        is), or ``callback(error)`` if that commit fails: ``durable()`` without a task,
        called in the commit's own loop turn. A frozen engine (a simulated crash) never
        calls back: a dead process answers nothing."""
        if self._frozen:
            return
        if isinstance(self.fatal, JournalCommitError):
            callback(self.fatal)
            return
        if self._flush_handle is None:
            callback(None)
            return
        if self._flush_lazy:
            self._flush_soon()
        self._on_commit.append(callback)

    def set_status(self, st: InstanceState, event: Event, **extra: Any) -> None:
        old = st.status
        new = transition(old, event, instance=st.id)
        if new is not old or extra:
            self.record(st, "status", None, {"status": new.value, **extra})
            if self.listeners and not self._frozen:
                self.emit("status", StatusChange(st, event.value, old.value, new.value))

    def emit(self, kind: str, payload: Any) -> None:
        for fn in self.listeners:
            try:
                fn(kind, payload)
            except Exception:  # a broken listener must not break the engine
                log.exception("listener failed on %s", kind)

    def step_finished(self, st: InstanceState, s: StepState) -> None:
        self._interruptions.pop(st.uid, None)
        if not self.listeners:
            return
        a = s.attempts[-1]
        self.emit(
            "step",
            StepEvent(
                st.workflow,
                st.scope,
                st.id,
                s.name,
                a.n,
                bool(a.ok),
                (a.end or a.start) - a.start,
                a.error,
            ),
        )

    # -- instances -------------------------------------------------------------------
    def lookup(self, workflow: str, scope: str, id: str) -> InstanceState:
        uid = self._index.get((workflow, scope, id))
        if uid is None:
            raise InstanceNotFoundError(f"instance {id!r} not found in workflow {workflow!r}")
        return self.state(uid)

    def state(self, uid: str) -> InstanceState:
        st = self._instances.get(uid)
        if st is None:
            assert self._journal is not None
            st = fold(uid, self._journal.facts([uid]).get(uid, []))
            self._instances[uid] = st
        return st

    def _new_instance(
        self, workflow: str, scope: str, id: str, params: Any, schedule: Any = None
    ) -> InstanceState:
        st = InstanceState(uuid.uuid4().hex)
        fact = {"workflow": workflow, "scope": scope, "id": id, "params": params}
        self.record(
            st, "created", None, fact if schedule is None else {**fact, "schedule": schedule}
        )
        self.record(st, "status", None, {"status": Status.QUEUED.value})
        self._instances[st.uid] = st
        self._index[(workflow, scope, id)] = st.uid
        return st

    def _check_options(self, options: Mapping[str, Any] | None) -> tuple[str, Any]:
        options = dict(options or {})
        unknown = set(options) - {"id", "params", "retention"}
        if unknown:
            raise ValidationError(
                f"unknown create option(s) {sorted(unknown)}; allowed: 'id', 'params'"
            )
        id = options.get("id")
        id = check_instance_id(id) if id is not None else str(uuid.uuid4())
        params, _ = json_value(options.get("params"), what=f"params of instance {id!r}")
        return id, params

    async def create(
        self,
        workflow: str,
        scope: str,
        options: Mapping[str, Any] | None,
        *,
        schedule: dict[str, Any] | None = None,
    ) -> InstanceState:
        """A new instance; ``schedule`` ({"cron", "scheduledTime"}) when a cron fires it."""
        self.workflow(workflow)
        id, params = self._check_options(options)
        if (workflow, scope, id) in self._index:
            raise InstanceExistsError(
                f"instance id {id!r} is already in use in workflow {workflow!r}; choose another id "
                "or get() the existing instance"
            )
        st = self._new_instance(workflow, scope, id, params, schedule)
        await self.durable()
        self._schedule(st)
        return st

    async def create_batch(
        self, workflow: str, scope: str, items: list[Mapping[str, Any]]
    ) -> list[InstanceState]:
        self.workflow(workflow)
        if not isinstance(items, list) or not 1 <= len(items) <= 100:
            n = len(items) if isinstance(items, list) else type(items).__name__
            raise ValidationError(f"create_batch takes a list of 1 to 100 items, got {n}")
        checked = [self._check_options(o) for o in items]  # all-or-nothing validation
        made, seen = [], set()
        for id, params in checked:
            if (workflow, scope, id) in self._index or id in seen:
                continue
            seen.add(id)
            made.append(self._new_instance(workflow, scope, id, params))
        await self.durable()
        for st in made:
            self._schedule(st)
        return made

    async def send_event(self, st: InstanceState, type_: str, payload: Any) -> None:
        check_event_type(type_)
        clean, _ = json_value(payload, what=f"payload of event {type_!r}")
        if st.status in FINISHED:
            raise InvalidStateError(
                f"cannot send event {type_!r} to instance {st.id!r}: it is {st.status.value}"
            )
        self.record(st, "event", None, {"type": type_, "payload": clean})
        await self.durable()
        self.emit("event", (st, type_))
        if st.status is Status.WAITING and type_ in st.waiting_types():
            self._wake(st)

    async def pause(self, st: InstanceState) -> None:
        running = st.uid in self._slots.running
        if running and st.status is Status.RUNNING:
            self.set_status(st, Event.PAUSE)  # -> waitingForPause until a step boundary
        else:
            self.set_status(st, Event.PAUSE)
            self._timer_gen[st.uid] = self._timer_gen.get(st.uid, 0) + 1
        await self.durable()

    async def resume(self, st: InstanceState) -> None:
        if st.status is Status.PAUSED:
            shift = self.clock.now_ms() - (st.paused_at or self.clock.now_ms())
            self.record(st, "resume", None, {"shift": shift})
            self.set_status(st, Event.RESUME)
            await self.durable()
            self._schedule(st)
        elif st.status is Status.WAITING_FOR_PAUSE:
            self.set_status(st, Event.RESUME)
            await self.durable()

    async def terminate(self, st: InstanceState) -> None:
        self.set_status(st, Event.TERMINATE)  # raises on finished instances
        self._abort(st)
        await self.durable()

    async def restart(self, st: InstanceState) -> None:
        self._abort(st)
        self.record(st, "restart", None, {})
        self.set_status(st, Event.RESTART)
        await self.durable()
        self._schedule(st)

    async def delete(self, st: InstanceState) -> None:
        """Stop the instance if it runs and forget it: it leaves listings and lookups,
        is never recovered, and its id is free again. Its facts stay in the journal."""
        self._abort(st)
        self.record(st, "deleted", None, {})
        await self.durable()
        self._forget(st)

    def _forget(self, st: InstanceState) -> None:
        self._instances.pop(st.uid, None)
        if self._index.get((st.workflow, st.scope, st.id)) == st.uid:
            del self._index[(st.workflow, st.scope, st.id)]
        self._parked.discard(st.uid)
        self._interruptions.pop(st.uid, None)
        self._after_pass.pop(st.uid, None)
        with contextlib.suppress(ValueError):
            self._slots.runnable.remove(st.uid)
        self._update_idle()

    def _abort(self, st: InstanceState) -> None:
        p = self._slots.running.get(st.uid)
        if p is not None and p.task is not None:
            p.aborted = True
            p.task.cancel()
        self._timer_gen[st.uid] = self._timer_gen.get(st.uid, 0) + 1

    # -- scheduling ------------------------------------------------------------------
    def _schedule(self, st: InstanceState) -> None:
        if self.stopping or not self.execute or st.uid in self._slots.running:
            return
        if not self._drives(st):
            return
        if len(self._slots.running) < self.max_running:
            self._start_pass(st)
        else:
            if st.status is not Status.QUEUED:
                self.set_status(st, Event.WAKE)
            self._slots.runnable.append(st.uid)
        self._update_idle()

    def _wake(self, st: InstanceState) -> None:
        self._timer_gen[st.uid] = self._timer_gen.get(st.uid, 0) + 1
        if st.uid in self._parked:
            return  # its code does not load: it waits for unpark(), not for timers or events
        if st.status is Status.WAITING:
            self.set_status(st, Event.WAKE)
            self._schedule(st)

    def _arm(self, st: InstanceState) -> None:
        """After a pass suspends: wake at the earliest timer, or now if an event is waiting."""
        if any(st.oldest_event(t) for t in st.waiting_types()):
            self._wake(st)
            return
        at = st.pending_wake()
        if at is None:
            return  # waits for an event with no deadline
        now = self.clock.now_ms()
        if at > now and any(self._skips_recorded(s) for s in st.steps.values()):
            at = now  # a sleep or retry delay journaled before the skip was on ends now too
        gen = self._timer_gen.get(st.uid, 0) + 1
        self._timer_gen[st.uid] = gen
        heapq.heappush(self._timers, (at, gen, st.uid))
        if self._timers[0][2] == st.uid:
            self._timer_changed.set()

    def _skips_recorded(self, s: StepState) -> bool:
        if s.done or s.wake_at is None:
            return False
        if s.kind == "sleep":
            return self.time.skips_sleep(s.name)
        return s.kind == "do" and self.time.skips_retry(s.name)

    async def _timer_loop(self) -> None:
        while True:
            now = self.clock.now_ms()
            while self._timers and self._timers[0][0] <= now:
                _, gen, uid = heapq.heappop(self._timers)
                if self._timer_gen.get(uid) == gen:
                    self._wake(self._instances[uid])
            self._update_idle()
            delay = self._timers[0][0] - now if self._timers else None
            self._timer_changed.clear()
            await self.clock.wait(delay, self._timer_changed)

    def _start_pass(self, st: InstanceState) -> None:
        wf = self.workflows.get(st.workflow)
        if wf is None:
            log.warning(
                "instance %s belongs to unregistered workflow %r; left as is", st.id, st.workflow
            )
            return
        p = Pass(self, st, wf)
        self._slots.running[st.uid] = p
        task = asyncio.create_task(self._drive(p), name=f"dynwf-pass-{st.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def unpark(self) -> int:
        """Run again every instance parked because its code did not load; returns how many."""
        parked, self._parked = self._parked, set()
        for uid in parked:
            st = self._instances.get(uid)
            if st is not None and st.status is Status.WAITING:
                self._wake(st)
        return len(parked)

    def interrupt(self, uid: str) -> bool:
        """End the instance's running pass at its next step boundary and run it again."""
        p = self._slots.running.get(uid)
        if p is None:
            return False
        p.interrupt()
        return True

    def after_pass(self, uid: str, fn: Callable[[], object]) -> bool:
        """End the running pass of ``uid`` at its next step boundary and call ``fn()`` once
        it has ended, before the instance runs again (e.g. to evict its code). False,
        and no call, if no pass of ``uid`` is running."""
        if not self.interrupt(uid):
            return False
        self._after_pass.setdefault(uid, []).append(fn)
        return True

    def _rerun_later(self, st: InstanceState) -> None:
        """Run an interrupted instance again, backing off if its code keeps failing."""
        n = self._interruptions.get(st.uid, 0)
        self._interruptions[st.uid] = n + 1
        delay = min(0.02 * 2**n, 5.0)

        def again() -> None:
            self._reruns -= 1
            if st.status is Status.WAITING_FOR_PAUSE:
                self.set_status(st, Event.PAUSED)
            elif st.status is Status.RUNNING:
                self._schedule(st)
            self._update_idle()

        self._reruns += 1
        self._delayed.add(asyncio.get_running_loop().call_later(delay, again))

    def _next_runnable(self) -> None:
        while self._slots.runnable and len(self._slots.running) < self.max_running:
            uid = self._slots.runnable.popleft()
            st = self._instances[uid]
            if st.status is Status.QUEUED and uid not in self._slots.running:
                self._start_pass(st)

    def _update_idle(self) -> None:
        busy = (
            self._slots.running
            or self._slots.runnable
            or self._pending
            or self._reruns
            or self._frozen
            or self._background
            or (self._timers and self._timers[0][0] <= self.clock.now_ms())
        )
        if busy:
            self._idle.clear()
        else:
            self._idle.set()

    async def wait_until_idle(self, timeout: float | None = None) -> None:
        """Return when no pass runs or is due (waiting instances do not count)."""

        async def idle() -> None:
            while True:
                self._update_idle()
                await self._idle.wait()
                await asyncio.sleep(0)
                self._update_idle()
                if self._idle.is_set():
                    return

        await asyncio.wait_for(idle(), timeout)
        if self.fatal is not None:
            raise self.fatal

    # -- driving a pass --------------------------------------------------------------
    async def _drive(self, p: Pass) -> None:
        st, wf = p.st, p.workflow
        try:
            if st.status is not Status.RUNNING:
                self.set_status(st, Event.START)
            event = event_for(st.params, st.created, st.id, st.workflow, st.schedule)
            p.task = asyncio.create_task(wf.program.run(event, p))
            try:
                output = await p.task
            except PassParked as exc:
                if p.aborted:
                    return
                self._pass_facts(p)
                if st.status is Status.RUNNING:
                    self.set_status(st, Event.SUSPEND)
                self.record(st, "parked", None, {"reason": str(exc)})  # for inspect
                self._parked.add(st.uid)
                self._timer_gen[st.uid] = self._timer_gen.get(st.uid, 0) + 1
                log.warning("instance %s waits until its code loads again: %s", st.id, exc)
                self.emit("parked", (st, str(exc)))
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
                await self.durable()
        finally:
            p.task = None
            p.close()
            if self._slots.running.get(st.uid) is p:
                del self._slots.running[st.uid]
            for fn in self._after_pass.pop(st.uid, ()):
                try:
                    fn()
                except Exception:
                    log.exception("after-pass hook of %s failed", st.id)
            if not p.aborted and st.status is Status.WAITING and st.uid not in self._parked:
                self._arm(st)
            elif st.status is Status.QUEUED and not self.stopping and not st.deleted:
                # woken (event, resume, restart) while this pass was still closing
                self._schedule(st)
            elif p.interrupted and st.status in (Status.RUNNING, Status.WAITING_FOR_PAUSE):
                self._rerun_later(st)
            self._next_runnable()
            self._update_idle()

    def _pass_facts(self, p: Pass) -> None:
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
                self.record(
                    st, "warning", None, {"message": message, "missing": missing, "ran": ran}
                )
                # Listeners (`dynwf dev`) print it and the journal keeps it for `dynwf run`,
                # `dynwf inspect` and the test API; a WARNING record would print it twice.
                log.info("%s", message)
                self.emit("warning", message)
        if p.replayed:
            self.record(st, "pass", None, {"replayed": p.replayed})

    def _end_suspended(self, p: Pass) -> None:
        st = p.st
        self._pass_facts(p)
        if self.stopping and st.status is Status.RUNNING:
            return  # left running: recovery re-queues it
        if p.interrupt_requested and st.status is Status.RUNNING:
            p.interrupted = True  # reloaded code: run again at once, from the top
            self._interruptions.pop(st.uid, None)
            return
        self.set_status(st, Event.SUSPEND)
        self.emit("pass", (st, "suspended"))

    def _end(self, p: Pass, event: Event, **extra: Any) -> None:
        self._pass_facts(p)
        self.set_status(p.st, event, **extra)
        self.emit("pass", (p.st, p.st.status.value))

    # -- reading -----------------------------------------------------------------------
    def instances(
        self,
        *,
        workflow: str | None = None,
        scope: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Any]:
        assert self._journal is not None
        self.commit_now()
        return self._journal.instances(
            workflow=workflow, scope=scope, status=status, limit=limit, offset=offset
        )

    def status_counts(self, workflow: str) -> dict[str, int]:
        assert self._journal is not None
        self.commit_now()
        return self._journal.status_counts(workflow)

    def all_states(self) -> Iterable[InstanceState]:
        return self._instances.values()


def _error_of(exc: BaseException) -> ErrorDict:
    if isinstance(exc, NonRetryableError):
        return {"name": "NonRetryableError", "message": str(exc)}
    return error_to_dict(exc)


# imported late: the binding module needs Engine for typing only
from dynwf.engine._binding import WorkflowBinding  # noqa: E402
