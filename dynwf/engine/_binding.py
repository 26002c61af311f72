"""The Workflow binding tenant code sees as ``env.WORKFLOWS``, and instance handles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dynwf.engine._model import InstanceState
from dynwf.engine._states import FINISHED
from dynwf.errors import InstanceNotFoundError, ValidationError

if TYPE_CHECKING:
    from dynwf.engine._engine import Engine


class WorkflowBinding:
    """``create``, ``create_batch`` and ``get`` for one workflow, within one tenant scope."""

    def __init__(self, engine: Engine, workflow: str, scope: str = "") -> None:
        self._engine = engine
        self.workflow = workflow
        self.scope = scope

    def __repr__(self) -> str:
        return f"<WorkflowBinding {self.workflow!r} scope={self.scope!r}>"

    # Equal bindings reach the same instances: a dispatcher that builds a tenant's env
    # afresh on every get_code() call hands over the same code, so nothing reloads.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkflowBinding):
            return NotImplemented
        return (self._engine, self.workflow, self.scope) == (
            other._engine,
            other.workflow,
            other.scope,
        )

    def __hash__(self) -> int:
        return hash((id(self._engine), self.workflow, self.scope))

    @property
    def engine(self) -> Engine:
        return self._engine

    def scoped(self, scope: str) -> WorkflowBinding:
        """The same workflow seen from another tenant scope."""
        return WorkflowBinding(self._engine, self.workflow, scope)

    async def create(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Instance:
        """Create an instance: ``create({"id"?, "params"?})``; returns once it is journaled."""
        st = await self._engine.create(self.workflow, self.scope, _merge(options, kwargs))
        return Instance(self._engine, st)

    async def create_batch(
        self, items: list[Mapping[str, Any]] | Mapping[str, Any]
    ) -> list[Instance] | dict[str, list[Any]]:
        """Create up to 100 instances.

        A list of create options: the instances made; ids already in use are skipped
        and left out, and one bad item rejects the whole list. ``{"count": n,
        "params"?}`` or ``{"instances": [options, ...]}``: ``{"created": [instances],
        "errors": [{"index", "id", "code", "message"}]}``, one error per item not made.
        """
        if isinstance(items, Mapping):
            made, errors = await self._engine.create_many(self.workflow, self.scope, items)
            return {"created": [Instance(self._engine, st) for st in made], "errors": errors}
        made = await self._engine.create_batch(self.workflow, self.scope, items)
        return [Instance(self._engine, st) for st in made]

    async def get(self, id: str) -> Instance:
        """The instance with this id; ``InstanceNotFoundError`` (``instance.not_found``) if none."""
        if not isinstance(id, str):
            raise ValidationError(f"get() takes an instance id string, got {type(id).__name__}")
        return Instance(self._engine, self._engine.lookup(self.workflow, self.scope, id))

    async def delete_batch(self, ids: list[str]) -> dict[str, Any]:
        """Delete up to 100 instances: ``{"deleted": [{"id"}], "errors": [{"id", "code",
        "message"}]}``; an id not found is an error entry, a repeated id counts once."""
        return await self._engine.delete_batch(self.workflow, self.scope, ids)

    createBatch = create_batch
    deleteBatch = delete_batch

    def other_scopes_with(self, id: str) -> list[str]:
        """Other tenant scopes of this workflow that hold an instance ``id`` (a scan: the
        dispatcher calls it only for ids a tenant chose)."""
        scopes = self._engine.table.scopes_with(self.workflow, id)
        return [s for s in scopes if s != self.scope]


def _merge(options: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if options is not None and not isinstance(options, Mapping):
        raise ValidationError(
            f"create() takes a dict like {{'id': ..., 'params': ...}}, got {options!r}"
        )
    return {**(options or {}), **kwargs}


class Instance:
    """A handle on one instance: ``id`` and the async lifecycle calls."""

    def __init__(self, engine: Engine, st: InstanceState) -> None:
        self._engine = engine
        self._st = st
        self.id: str = st.id

    def __repr__(self) -> str:
        return f"<Instance {self.id!r} {self._st.status.value}>"

    def _state(self) -> InstanceState:
        # restart() keeps the same state object; a reload replaces it, so look it up again.
        try:
            return self._engine.lookup(self._st.workflow, self._st.scope, self._st.id)
        except InstanceNotFoundError:
            return self._st

    async def status(self) -> dict[str, Any]:
        st = self._state()
        return {
            "status": st.status.value,
            "output": st.output if st.status in FINISHED else None,
            "error": st.error,
        }

    async def pause(self) -> None:
        await self._engine.pause(self._state())

    async def resume(self) -> None:
        await self._engine.resume(self._state())

    async def terminate(self) -> None:
        await self._engine.terminate(self._state())

    async def restart(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Run again from the top, or ``restart({"from": {"name", "count"?, "type"?}})``:
        keep the steps before that step and run again from it."""
        opts = _merge(options, kwargs) if options is not None or kwargs else None
        await self._engine.restart(self._state(), opts)

    async def delete(self) -> None:
        """Stop the instance if it runs and delete it: ``get()`` no longer finds it and
        its id is free again. ``InstanceNotFoundError`` if it is already gone."""
        st = self._engine.lookup(self._st.workflow, self._st.scope, self._st.id)
        if st.uid != self._st.uid:  # deleted already, and its id taken by a new instance
            raise InstanceNotFoundError(
                f"instance {self.id!r} not found in workflow {self._st.workflow!r}"
            )
        await self._engine.delete(st)

    async def send_event(self, event: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """``send_event({"type": ..., "payload": ...})``."""
        ev = _merge(event, kwargs)
        unknown = set(ev) - {"type", "payload"}
        if unknown or "type" not in ev:
            raise ValidationError(
                f"send_event takes {{'type': str, 'payload': ...}}, got keys {sorted(ev)}"
            )
        await self._engine.send_event(self._state(), ev["type"], ev.get("payload"))

    sendEvent = send_event
