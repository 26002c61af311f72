"""Reading and steering instances straight from the journal, when no ``dynwf dev`` serves it.

Reads open the journal read-only: DuckDB lets several read-only connections share
the file, but none while a writer holds it. Steering opens a steering engine
(``Engine(journal, execute=False)``) for the one call: it records the facts and
runs nothing; the next ``dynwf dev`` or ``dynwf run`` recovers and acts on them.
A lock held by another process is waited out briefly (another ``inspect`` or a
steering call is over in milliseconds), then reported as ``JournalInUseError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from dynwf.client._errors import JournalInUseError, StateNotFoundError
from dynwf.client._model import (
    Action,
    InstanceDetail,
    InstanceSummary,
    Steered,
    Steering,
    check_listing,
    envelope,
    pick,
    place_text,
    tenant_scopes,
)
from dynwf.dispatch import scope_of
from dynwf.engine import Engine, InstanceState, Workflow, fold, instance_detail, iso_ms
from dynwf.errors import InvalidStateError, ValidationError, WorkflowNotFoundError
from dynwf.journal import InstanceRow, Journal

T = TypeVar("T")


class JournalStateClient(Steering):
    """A ``StateClient`` over the journal file itself."""

    kind: Literal["dev", "journal"] = "journal"

    def __init__(self, journal: str | Path, *, lock_wait: float = 1.0) -> None:
        self.path = Path(journal)
        self.location = str(self.path)
        self.lock_wait = lock_wait
        self._where = f"the journal {self.path}"

    def __repr__(self) -> str:
        return f"<JournalStateClient {self.location}>"

    # -- reading -------------------------------------------------------------------
    async def list_instances(
        self,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[InstanceSummary]:
        check_listing(status, limit)
        async with self._reading() as journal:
            if workflow is not None:
                _check_workflow(journal, workflow, self._where)
            scopes = None if tenant is None else tenant_scopes(tenant)
            rows = journal.instances(workflow=workflow, scope=scopes, status=status, limit=limit)
        return [
            InstanceSummary(r.id, r.scope, r.workflow, r.status, iso_ms(r.created), r.steps)
            for r in rows
        ]

    async def describe(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> InstanceDetail:
        async with self._reading() as journal:
            uid = self._resolve(journal, id, workflow, tenant).uid
            st = fold(uid, journal.facts([uid]).get(uid, []))
        body = {k: v for k, v in instance_detail(st).items() if k != "tenant"}
        return {"id": st.id, "workflow": st.workflow, "tenant": st.scope, **body}

    # -- steering ------------------------------------------------------------------
    async def send_event(
        self,
        id: str,
        type: str,
        payload: Any,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
    ) -> Steered:
        async def send(engine: Engine, st: InstanceState) -> None:
            await engine.send_event(st, type, payload)

        return await self._with_engine(id, workflow, tenant, "send_event", send)

    async def _steer(
        self,
        id: str,
        workflow: str | None,
        tenant: str | None,
        action: Action,
        start: dict[str, Any] | None = None,
    ) -> Steered:
        async def act(engine: Engine, st: InstanceState) -> None:
            if start is not None:
                await engine.restart(st, {"from": start})
            else:
                await getattr(engine, action)(st)

        return await self._with_engine(id, workflow, tenant, action, act)

    async def delete(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered:
        async def delete(engine: Engine, st: InstanceState) -> None:
            await engine.delete(st)

        done = await self._with_engine(id, workflow, tenant, "delete", delete)
        return replace(done, status="deleted")

    async def _with_engine(
        self,
        id: str,
        workflow: str | None,
        tenant: str | None,
        action: Action | Literal["send_event", "delete"],
        call: Callable[[Engine, InstanceState], Awaitable[None]],
    ) -> Steered:
        # Resolve read-only first: ambiguity and typos never open the file for writing.
        async with self._reading() as journal:
            row = self._resolve(journal, id, workflow, tenant)
        engine = Engine(self.path, execute=False)
        await self._opened(engine.start)
        try:
            st = engine.lookup(row.workflow, row.scope, row.id)
            previous = st.status.value
            try:
                await call(engine, st)
            except (InvalidStateError, ValidationError) as exc:
                # The engine names the instance by id only; say which one it was.
                where = place_text((row.workflow, row.scope))
                raise type(exc)(f"{exc} ({where}, {self._where})") from None
            status = st.status.value
        finally:
            await engine.stop()
        return Steered(row.id, row.workflow, row.scope, action, status, previous)

    async def create(
        self,
        workflow: str,
        *,
        metadata: Any,
        params: Any = None,
        id: str | None = None,
        retention: dict[str, Any] | None = None,
    ) -> Steered:
        scope = scope_of(metadata)
        engine = Engine(self.path, execute=False)
        # A steering engine runs nothing: the workflow is registered only so that
        # create() knows the name; the next `dynwf dev` or `dynwf run` runs the instance.
        engine.register(Workflow(workflow, workflow, _NotRunHere()))
        await self._opened(engine.start)
        try:
            options: dict[str, Any] = {"params": envelope(metadata, params)}
            if id is not None:
                options["id"] = id
            if retention is not None:
                options["retention"] = retention
            st = await engine.create(workflow, scope, options)
            status = st.status.value
        finally:
            await engine.stop()
        return Steered(st.id, workflow, scope, "create", status, None)

    # -- the journal file ----------------------------------------------------------
    def _resolve(
        self, journal: Journal, id: str, workflow: str | None, tenant: str | None
    ) -> InstanceRow:
        rows = journal.instances(id=id)
        workflow_, tenant_ = pick(
            id,
            [(r.workflow, r.scope) for r in rows],
            workflow=workflow,
            tenant=tenant,
            where=f"in {self._where}",
        )
        return next(r for r in rows if (r.workflow, r.scope) == (workflow_, tenant_))

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[Journal]:
        async def open_() -> Journal:
            return Journal(self.path, read_only=True)

        journal = await self._opened(open_)
        try:
            yield journal
        finally:
            journal.close()

    async def _opened(self, open_: Callable[[], Awaitable[T]]) -> T:
        """``open_()``, retried while another process holds the file, for up to ``lock_wait`` s."""
        if not self.path.exists():
            raise StateNotFoundError(
                f"no journal at {self.path}: nothing has run in this project yet (start "
                "`dynwf dev` or `dynwf run`), or point --persist-to / DYNWF_PERSIST_TO at the "
                "state directory"
            )
        deadline = time.monotonic() + self.lock_wait
        delay = 0.02
        while True:
            try:
                return await open_()
            except JournalInUseError as exc:
                if time.monotonic() >= deadline:
                    raise self._in_use(exc.pid) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _in_use(self, pid: int | None) -> JournalInUseError:
        holder = f"PID {pid}{_command_of(pid)}" if pid is not None else "PID unknown"
        return JournalInUseError(
            f"the journal {self.path} is in use by {holder} and no "
            f"running `dynwf dev` API serves it ({self.path.parent / 'dev.json'} is missing "
            "or stale): wait for that process to finish or stop it, then try again",
            pid,
        )


class _NotRunHere:
    """The program of a workflow a steering engine knows by name only."""

    async def run(self, event: Any, host: Any) -> Any:
        raise RuntimeError("a steering engine never runs a workflow")


def _check_workflow(journal: Journal, workflow: str, where: str) -> None:
    known = journal.workflows()
    if workflow not in known:
        raise WorkflowNotFoundError(
            f"no instance of workflow {workflow!r} in {where} (workflows with instances: "
            f"{', '.join(known) or 'none'}): check --workflow"
        )


def _command_of(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    cmd = " ".join(raw.decode(errors="replace").replace("\0", " ").split())
    return f" ({cmd[:77] + '...' if len(cmd) > 80 else cmd})" if cmd else ""
