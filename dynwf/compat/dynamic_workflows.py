"""``dynamic_workflows`` under dynwf: the names, signatures and errors of Cloudflare's
Python Dynamic Workflows library (danlapid/dynamic-workflows, ``dynamic-workflows-py``).

On Cloudflare the dispatcher vendors the real library; under dynwf this module stands
in for it (the real one needs workerd's JS bridge). dynwf ships no copy of it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, Protocol

from dynwf.dispatch._api import (
    current_main,
    exported_classes,
    platform_env,
    tenant_binding,
)
from dynwf.dispatch._envelope import ENVELOPE_KEY
from dynwf.engine import PassParked
from dynwf.errors import MissingDispatcherMetadataError as _DynwfMissingMetadata
from dynwf.workers import WorkerEntrypoint, WorkflowEntrypoint
from dynwf.workers._event import tenant_event

DispatcherMetadata = dict
"""Opaque, JSON-shaped data that routes a workflow back to its tenant (it is persisted)."""


class MissingDispatcherMetadataError(_DynwfMissingMetadata):
    """The workflow's payload has no dispatcher envelope (created on the raw binding)."""

    def __init__(self) -> None:
        super().__init__(
            "dynamic-workflows: workflow event is missing dispatcher metadata. "
            "Did you forget to wrap the Workflow binding with wrap_workflow_binding()?"
        )


class WorkflowRunner(Protocol):
    """Anything with ``async run(event, step)``: e.g. a Worker Loader ``getEntrypoint()``."""

    async def run(self, event: dict[str, Any], step: Any) -> Any: ...


LoadWorkflowRunnerContext = dict
"""``{"metadata", "env", "ctx"}``, given to ``load_runner``."""

LoadWorkflowRunner = Callable[[dict[str, Any]], Any]


class DynamicWorkflowBinding(WorkerEntrypoint):
    """The wrapped Workflow binding a tenant gets as ``env.WORKFLOWS``.

    Import it into the dispatcher's main module: Cloudflare can only make these for
    classes the main module exports, and ``wrap_workflow_binding`` checks it.
    """

    def _binding(self) -> Any:
        return tenant_binding(self.env, self._metadata(), self.ctx.props.bindingName)

    def _metadata(self) -> Any:
        return self.ctx.props.to_py().get("metadata", {})

    async def create(self, options: dict[str, Any] | None = None) -> Any:
        return await self._binding().create(options)

    async def createBatch(self, batch: Any) -> Any:
        made = await self._binding().create_batch(batch)
        return made if isinstance(made, dict) else list(made)

    async def get(self, instance_id: str) -> Any:
        return await self._binding().get(instance_id)


def wrap_workflow_binding(metadata: Any, *, binding_name: str = "WORKFLOWS") -> Any:
    """A per-tenant Workflow binding to put in the tenant's env (as ``WORKFLOWS``)."""
    env = platform_env()
    get_main = current_main.get()
    main = get_main() if get_main is not None else None
    if main is not None and "DynamicWorkflowBinding" not in exported_classes(main):
        raise RuntimeError(
            "dynamic-workflows: `DynamicWorkflowBinding` is not registered on "
            "`cloudflare:workers` exports. Add `from dynamic_workflows import "
            "DynamicWorkflowBinding` to your dispatcher's main module."
        )
    return tenant_binding(env, metadata, binding_name)


def _unwrap_params(payload: Any) -> tuple[Any, Any] | None:
    if isinstance(payload, dict) and ENVELOPE_KEY in payload and "params" in payload:
        return payload[ENVELOPE_KEY], payload["params"]
    return None


async def dispatch_workflow(
    *,
    env: Any,
    ctx: Any,
    event: dict[str, Any],
    step: Any,
    load_runner: LoadWorkflowRunner,
) -> Any:
    """Unwrap the envelope on ``event["payload"]`` and run the tenant's runner."""
    unwrapped = _unwrap_params(event["payload"])
    if unwrapped is None:
        raise MissingDispatcherMetadataError()
    metadata, params = unwrapped
    inner = tenant_event(params, event.get("timestamp"), event["instanceId"])
    try:
        runner = load_runner({"metadata": metadata, "env": env, "ctx": ctx})
        if inspect.isawaitable(runner):
            runner = await runner
    except Exception as exc:
        # The tenant's code cannot be found now (a moved folder, a store that is down):
        # the instance waits, as for code that does not compile, and runs when it loads.
        raise PassParked(
            f"load_runner() failed for tenant {json.dumps(metadata, default=str)}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return await runner.run(inner, step)


def create_dynamic_workflow_entrypoint(
    load_runner: LoadWorkflowRunner, *, class_name: str = "DynamicWorkflow"
) -> type:
    """The ``WorkflowEntrypoint`` subclass to assign to ``class_name`` in the main module."""

    class _DynamicWorkflowEntrypoint(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return await dispatch_workflow(
                env=self.env, ctx=self.ctx, event=event, step=step, load_runner=load_runner
            )

    _DynamicWorkflowEntrypoint.__name__ = class_name
    _DynamicWorkflowEntrypoint.__qualname__ = class_name
    return _DynamicWorkflowEntrypoint


class WrappedInstance:
    """A tenant's convenience view of an instance handle: ``.id`` and async methods."""

    __slots__ = ("_handle", "id")

    def __init__(self, handle: Any) -> None:
        self.id = handle.id
        self._handle = handle

    async def status(self) -> Any:
        return await self._handle.status()

    async def pause(self) -> Any:
        return await self._handle.pause()

    async def resume(self) -> Any:
        return await self._handle.resume()

    async def terminate(self) -> Any:
        return await self._handle.terminate()

    async def restart(self, options: Any = None) -> Any:
        return await (self._handle.restart(options) if options else self._handle.restart())

    async def send_event(self, *, type: str, payload: Any) -> Any:
        return await self._handle.sendEvent({"type": type, "payload": payload})


class WrappedWorkflow:
    """A tenant's convenience view of ``env.WORKFLOWS``: keyword ``create``, wrapped handles."""

    def __init__(self, js_binding: Any) -> None:
        self._binding = getattr(js_binding, "_binding", js_binding)

    async def create(self, *, id: str | None = None, params: Any = None) -> WrappedInstance:
        opts: dict[str, Any] = {}
        if id is not None:
            opts["id"] = id
        if params is not None:
            opts["params"] = params
        return WrappedInstance(await self._binding.create(opts))

    async def create_batch(self, batch: Any) -> Any:
        made = await self._binding.createBatch(batch)
        if isinstance(made, dict):  # the {"count"} / {"instances"} forms
            return {**made, "created": [WrappedInstance(h) for h in made["created"]]}
        return [WrappedInstance(h) for h in made]

    async def get(self, instance_id: str) -> WrappedInstance:
        return WrappedInstance(await self._binding.get(instance_id))


__all__ = [
    "DispatcherMetadata",
    "DynamicWorkflowBinding",
    "LoadWorkflowRunner",
    "LoadWorkflowRunnerContext",
    "MissingDispatcherMetadataError",
    "WorkflowRunner",
    "WrappedInstance",
    "WrappedWorkflow",
    "create_dynamic_workflow_entrypoint",
    "dispatch_workflow",
    "wrap_workflow_binding",
]
