"""The engine: registered workflows, the instances, and the operations on them.

Its parts: ``_commit`` (facts and group commit), ``_schedule`` (run slots, timers,
passes, and what follows a status change), ``_recovery`` (rebuilding from the
journal), ``_states`` (which status changes are allowed). Every status change goes
through ``set_status``, which asks ``_states`` and hands the change to
``Scheduler.react``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from dynwf.engine._clock import Clock, SystemClock
from dynwf.engine._commit import GroupCommit
from dynwf.engine._model import InstanceState, StepState, fold
from dynwf.engine._modify import Modifiers, TimeControl
from dynwf.engine._recovery import recover_after_crash, recover_journal
from dynwf.engine._rules import (
    batch_items,
    check_event_type,
    check_id_batch,
    check_instance_id,
    check_restart_options,
    check_retention,
    check_workflow_name,
    json_value,
)
from dynwf.engine._schedule import Scheduler
from dynwf.engine._states import FINISHED, Event, Status, transition
from dynwf.engine._table import InstanceTable
from dynwf.engine._workflow import Faults, Listener, StatusChange, StepEvent, Workflow
from dynwf.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    JournalCommitError,
    JournalError,
    ValidationError,
    WorkflowNotFoundError,
)
from dynwf.journal import Durability, Journal

log = logging.getLogger("dynwf.engine")


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
        self.table = InstanceTable()
        self.group_commit = GroupCommit(self.journal_path, self.clock, self._fail_stop)
        self.scheduler = Scheduler(self)
        self._modifiers: dict[tuple[str, str | None, str | None], Modifiers] = {}
        self._modifier_since: dict[str, int] = {}
        self._background: set[asyncio.Task[None]] = set()
        self.crashes = 0

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
        wf = self.workflows.get(name) or self.workflow_for_binding(name)
        return WorkflowBinding(self, wf.name, scope)

    # -- simulated crash (the test API's crash_at) ----------------------------------------
    def crash_soon(self) -> None:
        """Behave as if the process died now: nothing more reaches the journal, and a
        moment later the engine forgets its memory and recovers from the journal, as a
        fresh process would. The in-process twin of a SIGKILL, for tests."""
        if self.group_commit.frozen:
            return
        self.group_commit.frozen = True
        task = asyncio.get_running_loop().create_task(recover_after_crash(self))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
    @property
    def journal(self) -> Journal:
        journal = self.group_commit.journal
        if journal is None:
            raise RuntimeError("the engine is not started: call start() (or use async with)")
        return journal

    async def start(self) -> None:
        """Open the journal and recover every unfinished instance."""
        self.stopping = False
        self.group_commit.open(
            Journal(
                self.journal_path,
                durability=self.durability,
                accept_data_loss=self.accept_data_loss,
            )
        )
        recovered = recover_journal(self)
        self.scheduler.start()
        if recovered and self.execute:
            self.emit("recovered", [st for st in recovered if self.drives_instance(st)])
        self.scheduler.update_idle()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop passes at their next step boundary (then cancel after ``grace`` s), commit, close."""
        if self.group_commit.journal is None:
            return
        self.stopping = True
        sched = self.scheduler
        for p in list(sched.running.values()):
            if not p.inflight and p.task is not None:
                p.aborted = True
                p.task.cancel()
        for bg in list(self._background):
            await asyncio.gather(bg, return_exceptions=True)
        if sched.tasks:
            _, pending = await asyncio.wait(set(sched.tasks), timeout=grace)
            sched.abort_all()
            if pending:
                await asyncio.wait(pending)
        await sched.stop_timers()
        self.commit_now()
        journal, self.group_commit.journal = self.group_commit.journal, None
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

    def drives_instance(self, st: InstanceState) -> bool:
        """Whether this engine runs ``st`` (see ``drives``)."""
        return self.drives is None or self.drives(st)

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
        """Apply a fact to the instance and queue it for the next commit (``GroupCommit``)."""
        self.group_commit.record(st, kind, step, data, lazy=lazy)

    @property
    def fatal(self) -> JournalCommitError | None:
        """The failed commit that stopped this engine, if one did."""
        return self.group_commit.fatal

    @property
    def failed(self) -> bool:
        """A journal commit failed: the engine acknowledges and runs nothing more."""
        return self.group_commit.fatal is not None

    def _fail_stop(self, error: JournalCommitError) -> None:
        self.stopping = True
        self.scheduler.abort_all()
        for handle in self.scheduler.delayed:
            handle.cancel()
        if self.scheduler.timer_task is not None:
            self.scheduler.timer_task.cancel()
        self.emit("fatal", error)

    @property
    def passes_running(self) -> int:
        """How many instances have a pass (a ``run()`` call) in progress now."""
        return len(self.scheduler.running)

    @property
    def commits(self) -> int:
        """Journal commits made since ``start()`` (each is one transaction)."""
        return self.group_commit.commits

    def commit_now(self) -> None:
        """Commit what is queued immediately (used before a deliberate crash and at stop)."""
        self.group_commit.commit_now()

    async def durable(self) -> None:
        """Return once every fact recorded so far is committed (raise if that fails)."""
        await self.group_commit.durable()

    def when_durable(self, callback: Callable[[BaseException | None], None]) -> None:
        """``durable()`` as a callback: see ``GroupCommit.when_durable``."""
        self.group_commit.when_durable(callback)

    @property
    def busy(self) -> bool:
        """Facts wait for a commit, or background work (a crash recovery) is under way."""
        return self.group_commit.busy or bool(self._background)

    def set_status(self, st: InstanceState, event: Event, **extra: Any) -> tuple[Status, Status]:
        """Move ``st`` by ``event`` (``InvalidStateError`` if the state table forbids it),
        record the change, and set in motion what follows it; returns (old, new)."""
        old = st.status
        new = transition(old, event, instance=st.id)
        if new is not old or extra:
            self.record(st, "status", None, {"status": new.value, **extra})
            if self.listeners and not self.group_commit.frozen:
                self.emit("status", StatusChange(st, event.value, old.value, new.value))
        self.scheduler.react(st, event, old, new)
        return old, new

    def emit(self, kind: str, payload: Any) -> None:
        for fn in self.listeners:
            try:
                fn(kind, payload)
            except Exception:  # a broken listener must not break the engine
                log.exception("listener failed on %s", kind)

    def step_finished(self, st: InstanceState, s: StepState) -> None:
        self.scheduler.step_finished(st)
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

    # -- passes ----------------------------------------------------------------------
    def unpark(self) -> int:
        """Run again every instance parked because its code did not load; returns how many."""
        return self.scheduler.unpark()

    def interrupt(self, uid: str) -> bool:
        """End the instance's running pass at its next step boundary and run it again."""
        return self.scheduler.interrupt(uid)

    def after_pass(self, uid: str, fn: Callable[[], object]) -> bool:
        """End the running pass of ``uid`` at its next step boundary and call ``fn()`` once
        it has ended, before the instance runs again (e.g. to evict its code). False,
        and no call, if no pass of ``uid`` is running."""
        return self.scheduler.after_pass(uid, fn)

    async def wait_until_idle(self, timeout: float | None = None) -> None:
        """Return when no pass runs or is due (waiting instances do not count)."""
        async with asyncio.timeout(timeout):
            await self.scheduler.wait_until_idle()
        if self.fatal is not None:
            raise self.fatal

    # -- instances -------------------------------------------------------------------
    def lookup(self, workflow: str, scope: str, id: str) -> InstanceState:
        uid = self.table.index.get((workflow, scope, id))
        if uid is None:
            raise InstanceNotFoundError(f"instance {id!r} not found in workflow {workflow!r}")
        return self.state(uid)

    def state(self, uid: str) -> InstanceState:
        st = self.table.states.get(uid)
        if st is None:
            st = fold(uid, self.journal.facts([uid]).get(uid, []))
            self.table.states[uid] = st
        return st

    def find(self, uid: str) -> InstanceState | None:
        """The instance ``uid`` if it is loaded (running, waiting or looked up)."""
        return self.table.states.get(uid)

    def _new_instance(
        self,
        workflow: str,
        scope: str,
        id: str,
        params: Any,
        retention: dict[str, int] | None,
        schedule: dict[str, Any] | None = None,
    ) -> InstanceState:
        st = InstanceState(uuid.uuid4().hex)
        created = {"workflow": workflow, "scope": scope, "id": id, "params": params}
        if retention is not None:
            created["retention"] = retention
        if schedule is not None:
            created["schedule"] = schedule
        self.record(st, "created", None, created)
        self.table.add(st)
        self.set_status(st, Event.CREATE)
        return st

    def _check_options(
        self, options: Mapping[str, Any] | None
    ) -> tuple[str, Any, dict[str, int] | None]:
        """A create's id (a new UUID if none), params and retention (ms), all checked."""
        options = dict(options or {})
        unknown = set(options) - {"id", "params", "retention"}
        if unknown:
            raise ValidationError(
                f"unknown create option(s) {sorted(unknown)}; allowed: 'id', 'params', 'retention'"
            )
        id = options.get("id")
        id = check_instance_id(id) if id is not None else str(uuid.uuid4())
        params, _ = json_value(options.get("params"), what=f"params of instance {id!r}")
        return id, params, check_retention(options.get("retention"), id=id)

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
        id, params, retention = self._check_options(options)
        if (workflow, scope, id) in self.table.index:
            raise InstanceExistsError(
                f"instance id {id!r} is already in use in workflow {workflow!r}; choose another id "
                "or get() the existing instance"
            )
        st = self._new_instance(workflow, scope, id, params, retention, schedule)
        await self.durable()
        return st

    async def create_many(
        self, workflow: str, scope: str, spec: Mapping[str, Any]
    ) -> tuple[list[InstanceState], list[dict[str, Any]]]:
        """``create_batch``'s dict forms (see ``batch_items``): the instances made, and an
        error ``{"index", "id", "code", "message"}`` for each item that was not (bad
        options, an id in use or repeated). A bad form raises and creates nothing."""
        self.workflow(workflow)
        items = batch_items(spec)
        made: list[InstanceState] = []
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        for index, item in enumerate(items):
            given = item.get("id")
            try:
                id, params, retention = self._check_options(item)
            except ValidationError as exc:
                errors.append(
                    {
                        "index": index,
                        "id": given if isinstance(given, str) else None,
                        "code": "instance.invalid_options",
                        "message": str(exc),
                    }
                )
                continue
            if (workflow, scope, id) in self.table.index or id in seen:
                errors.append(
                    {
                        "index": index,
                        "id": id,
                        "code": "instance.already_exists",
                        "message": f"instance id {id!r} is already in use in workflow {workflow!r}",
                    }
                )
                continue
            seen.add(id)
            made.append(self._new_instance(workflow, scope, id, params, retention))
        await self.durable()
        return made, errors

    async def create_batch(
        self, workflow: str, scope: str, items: list[Mapping[str, Any]]
    ) -> list[InstanceState]:
        self.workflow(workflow)
        if not isinstance(items, list) or not 1 <= len(items) <= 100:
            n = len(items) if isinstance(items, list) else type(items).__name__
            raise ValidationError(f"create_batch takes a list of 1 to 100 items, got {n}")
        checked = [self._check_options(o) for o in items]  # all-or-nothing validation
        made, seen = [], set()
        for id, params, retention in checked:
            if (workflow, scope, id) in self.table.index or id in seen:
                continue
            seen.add(id)
            made.append(self._new_instance(workflow, scope, id, params, retention))
        await self.durable()
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
        if type_ in st.waiting_types():
            self.scheduler.wake(st)

    async def pause(self, st: InstanceState) -> None:
        self.set_status(st, Event.PAUSE)  # a running pass: waitingForPause until a boundary
        await self.durable()

    async def resume(self, st: InstanceState) -> None:
        if st.status is Status.PAUSED:
            shift = self.clock.now_ms() - (st.paused_at or self.clock.now_ms())
            self.record(st, "resume", None, {"shift": shift})
        self.set_status(st, Event.RESUME)
        await self.durable()

    async def terminate(self, st: InstanceState) -> None:
        self.set_status(st, Event.TERMINATE)  # raises on finished instances
        await self.durable()

    async def restart(self, st: InstanceState, options: Mapping[str, Any] | None = None) -> None:
        """Run the instance again from the top with its params; with ``{"from": {"name",
        "count"?, "type"?}}``, keep the steps journaled before that step and run again
        from it. An unknown step raises ``ValidationError`` and changes nothing."""
        start = check_restart_options(dict(options) if options is not None else None)
        data: dict[str, Any] = {}
        if start is not None:
            wiped = st.steps_from(start["name"], start["count"], start["type"])
            if wiped is None:
                which = f"{start['name']!r}" + (
                    f" (call {start['count']})" if start["count"] > 1 else ""
                )
                if start["type"] is not None:
                    which += f" of type {start['type']!r}"
                known = ", ".join(f"{s.name}-{s.count} ({s.kind})" for s in st.steps.values())
                raise ValidationError(
                    f"cannot restart instance {st.id!r} from step {which}: its journal has no "
                    f"such step (its steps: {known or 'none yet'}); nothing was changed"
                )
            data["keep"] = [k for k in st.steps if k not in set(wiped)]
        self.record(st, "restart", None, data)
        self.set_status(st, Event.RESTART)
        await self.durable()

    async def delete(self, st: InstanceState) -> None:
        """Stop the instance if it runs and forget it: it leaves listings and lookups,
        is never recovered, and its id is free again. Its facts stay in the journal."""
        self.scheduler.forget(st)
        self.record(st, "deleted", None, {})
        await self.durable()
        self.table.forget(st)
        self.scheduler.update_idle()

    async def delete_batch(self, workflow: str, scope: str, ids: Any) -> dict[str, Any]:
        """Delete up to 100 instances by id (a repeated id counts once):
        ``{"deleted": [{"id"}], "errors": [{"id", "code", "message"}]}``. A bad list
        (empty, over 100, not ids) raises and deletes nothing."""
        self.workflow(workflow)
        unique = check_id_batch(ids, what="delete_batch")
        deleted: list[dict[str, str]] = []
        errors: list[dict[str, str]] = []
        for id in unique:
            uid = self.table.index.get((workflow, scope, id))
            if uid is None:
                errors.append(
                    {
                        "id": id,
                        "code": "instance.not_found",
                        "message": f"instance {id!r} not found in workflow {workflow!r}",
                    }
                )
                continue
            await self.delete(self.state(uid))
            deleted.append({"id": id})
        return {"deleted": deleted, "errors": errors}

    def expire(self, st: InstanceState) -> None:
        """A finished instance past its retention: it is gone (not found), and once a
        tombstone fact is durable its other facts are removed from the journal. The
        tombstone keeps the journal's newest seq (see ``WriterMark``). No-op for an
        instance not (or no longer) due, e.g. restarted meanwhile."""
        at = st.expires_at
        if at is None or at > self.clock.now_ms() or st.deleted:
            return
        self.scheduler.forget(st)
        self.record(st, "deleted", None, {"expired": True})
        self.table.forget(st)

        def compact(error: BaseException | None) -> None:
            self.scheduler.update_idle()  # the tombstone's commit was the work left
            if error is not None or self.group_commit.journal is None:
                return  # fail-stop: the engine reports it; the next start expires it again
            try:
                self.group_commit.journal.compact([st.uid])
            except JournalError:
                log.exception("could not remove the facts of expired instance %s", st.id)

        self.when_durable(compact)
        self.emit("expired", st)

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
        self.commit_now()
        return self.journal.instances(
            workflow=workflow, scope=scope, status=status, limit=limit, offset=offset
        )

    def status_counts(self, workflow: str) -> dict[str, int]:
        self.commit_now()
        return self.journal.status_counts(workflow)

    def all_states(self) -> Iterable[InstanceState]:
        return self.table.states.values()


# imported late: the binding module needs Engine for typing only
from dynwf.engine._binding import WorkflowBinding  # noqa: E402
