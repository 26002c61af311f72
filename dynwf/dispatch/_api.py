"""The dispatcher API: Python counterpart of ``@cloudflare/dynamic-workflows``.

``wrap_workflow_binding(metadata)`` gives a tenant a Workflow binding whose instances
carry the envelope and live in the tenant's own scope; ``create_dynamic_workflow_entrypoint``
makes the one ``WorkflowEntrypoint`` class the platform registers, which on every run
pass unwraps the envelope, asks ``load_runner`` for the tenant's code and runs it.
"""

from __future__ import annotations

import contextvars
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from dynwf.dispatch._envelope import scope_of, unwrap, wrap
from dynwf.engine import EventDict, Instance, WorkflowBinding
from dynwf.engine._pass import PassParked
from dynwf.errors import DynwfError, ValidationError
from dynwf.workers import WorkflowEntrypoint

# The platform worker's env while dynwf runs its code (fetch and workflow passes).
current_env: contextvars.ContextVar[Any] = contextvars.ContextVar("dynwf_current_env")


class TenantWorkflowBinding:
    """A tenant's view of a dynamic workflow: envelope on create, tenant-scoped ids."""

    def __init__(self, inner: WorkflowBinding, metadata: Any) -> None:
        self._metadata = metadata
        self._inner = inner.scoped(scope_of(metadata))

    @property
    def metadata(self) -> Any:
        return self._metadata

    def __eq__(self, other: object) -> bool:  # the same tenant's view of the same workflow
        if not isinstance(other, TenantWorkflowBinding):
            return NotImplemented
        return self._inner == other._inner

    def __hash__(self) -> int:
        return hash(self._inner)

    async def create(self, options: Mapping[str, Any] | None = None, **kwargs: Any) -> Instance:
        opts = {**(options or {}), **kwargs}
        return await self._inner.create(_enveloped(opts, self._metadata))

    async def create_batch(self, items: list[Mapping[str, Any]]) -> list[Instance]:
        if not isinstance(items, list):
            raise ValidationError(f"create_batch takes a list of dicts, got {type(items).__name__}")
        return await self._inner.create_batch([_enveloped(dict(i), self._metadata) for i in items])

    async def get(self, id: str) -> Instance:
        """Only instances this tenant created; any other id is 'not found'."""
        return await self._inner.get(id)

    createBatch = create_batch


def _enveloped(options: dict[str, Any], metadata: Any) -> dict[str, Any]:
    return {**options, "params": wrap(metadata, options.get("params"))}


def wrap_workflow_binding(
    metadata: Any, *, binding_name: str = "WORKFLOWS", env: Any = None
) -> TenantWorkflowBinding:
    """A binding for one tenant; ``metadata`` rides along to route every later step."""
    env = env if env is not None else current_env.get(None)
    if env is None:
        raise DynwfError(
            "wrap_workflow_binding() was called outside the platform worker: pass env= "
            "(e.g. wrap_workflow_binding(meta, env=self.env)) or call it from fetch/run"
        )
    inner = getattr(env, binding_name, None)
    if not isinstance(inner, WorkflowBinding):
        raise DynwfError(
            f"env has no Workflow binding named {binding_name!r}: declare it in [[workflows]] "
            "of wrangler.toml or pass binding_name="
        )
    return TenantWorkflowBinding(inner, metadata)


LoadRunner = Callable[[dict[str, Any]], Any]


async def dispatch_workflow(
    entrypoint: WorkflowEntrypoint, event: Any, step: Any, load_runner: LoadRunner
) -> Any:
    """One run pass of a dynamic workflow: unwrap, load the tenant's runner, run it."""
    metadata, params = unwrap(event["payload"])
    try:
        runner = load_runner({"metadata": metadata, "env": entrypoint.env, "ctx": entrypoint.ctx})
        if inspect.isawaitable(runner):
            runner = await runner
    except Exception as exc:
        # The tenant's code cannot be found now (a moved folder, a store that is down):
        # the instance waits, as for code that does not compile, and runs when it loads.
        raise PassParked(
            f"load_runner() failed for tenant {json.dumps(metadata, default=str)}: {type(exc).__name__}: {exc}"
        ) from None
    inner = EventDict(
        payload=params,
        timestamp=event["timestamp"],
        instanceId=event["instanceId"],
        workflowName=event.get("workflowName"),
    )
    return await runner.run(inner, step)


def create_dynamic_workflow_entrypoint(
    load_runner: Callable[[dict[str, Any]], Any | Awaitable[Any]],
) -> type[WorkflowEntrypoint]:
    """The ``WorkflowEntrypoint`` subclass to export as the workflow's ``class_name``."""

    class DynamicWorkflow(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return await dispatch_workflow(self, event, step, load_runner)

    DynamicWorkflow.load_runner = staticmethod(load_runner)  # type: ignore[attr-defined]
    return DynamicWorkflow
