"""The dispatcher side of Dynamic Workflows, as dynwf runs it.

The public form is ``dynamic_workflows`` (``dynwf/compat/dynamic_workflows.py``, the
names of Cloudflare's Python library). This module holds what it runs on: the tenant's
view of a workflow binding (envelope on create, tenant-scoped ids), the platform the
dispatcher code runs in, and dynwf's older names, kept one release with a warning.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import types
import warnings
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from dynwf.dispatch._envelope import scope_of, wrap
from dynwf.engine import Instance, WorkflowBinding
from dynwf.errors import DynwfError, ValidationError
from dynwf.workers import WorkerEntrypoint, WorkflowEntrypoint

log = logging.getLogger("dynwf.dispatch")

# The platform worker's env and main module while dynwf runs its code (fetch, workflow
# passes, Worker Loader callbacks): what ``cloudflare:workers`` env/exports are there.
current_env: contextvars.ContextVar[Any] = contextvars.ContextVar("dynwf_current_env")
# A getter, so a dispatcher re-imported by hot reload is the one seen.
current_main: contextvars.ContextVar[Callable[[], types.ModuleType | None] | None] = (
    contextvars.ContextVar("dynwf_current_main", default=None)
)


class TenantWorkflowBinding:
    """A tenant's view of a dynamic workflow: envelope on create, tenant-scoped ids."""

    def __init__(self, inner: WorkflowBinding, metadata: Any) -> None:
        self._metadata = metadata
        self._all = inner
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
        self._warn_shared_ids([opts])
        return await self._inner.create(_enveloped(opts, self._metadata))

    async def create_batch(
        self, items: list[Mapping[str, Any]] | Mapping[str, Any]
    ) -> list[Instance] | dict[str, list[Any]]:
        if isinstance(items, Mapping):  # {"count": n, "params"?} or {"instances": [...]}
            spec = dict(items)
            if "count" in spec:
                return await self._inner.create_batch(_enveloped(spec, self._metadata))
            listed = spec.get("instances")
            if isinstance(listed, list) and all(isinstance(i, Mapping) for i in listed):
                self._warn_shared_ids(listed)
                spec["instances"] = [_enveloped(dict(i), self._metadata) for i in listed]
            return await self._inner.create_batch(spec)  # the engine names what is wrong
        if not isinstance(items, list):
            raise ValidationError(
                f"create_batch takes a list of dicts, {{'count': n}} or {{'instances': [...]}}, "
                f"got {type(items).__name__}"
            )
        self._warn_shared_ids(items)
        return await self._inner.create_batch([_enveloped(dict(i), self._metadata) for i in items])

    async def get(self, id: str) -> Instance:
        """Only instances this tenant created; any other id is 'not found'."""
        return await self._inner.get(id)

    async def delete_batch(self, ids: list[str]) -> dict[str, Any]:
        """Only this tenant's instances; any other id is a 'not found' error entry."""
        return await self._inner.delete_batch(ids)

    createBatch = create_batch
    deleteBatch = delete_batch

    def _warn_shared_ids(self, items: list[Mapping[str, Any]]) -> None:
        """dynwf keeps each tenant's ids apart; Cloudflare has one id space per Workflow."""
        for item in items:
            id = item.get("id") if isinstance(item, Mapping) else None
            if not isinstance(id, str):
                continue
            others = self._inner.other_scopes_with(id)
            if others:
                log.warning(
                    "instance id %r is already used by another tenant of workflow %r (%s): "
                    "dynwf keeps tenants' ids apart, but on Cloudflare one Workflow has one id "
                    "namespace, so this create fails there; prefix ids with the tenant id",
                    id,
                    self._inner.workflow,
                    ", ".join(others),
                )


def _enveloped(options: dict[str, Any], metadata: Any) -> dict[str, Any]:
    return {**options, "params": wrap(metadata, options.get("params"))}


def tenant_binding(
    env: Any, metadata: Any, binding_name: str = "WORKFLOWS"
) -> TenantWorkflowBinding:
    """The binding tenant ``metadata`` gets, made from the platform's ``env``."""
    inner = getattr(env, binding_name, None)
    if not isinstance(inner, WorkflowBinding):
        raise DynwfError(
            f"env has no Workflow binding named {binding_name!r}: declare it in [[workflows]] "
            "of wrangler.toml or pass binding_name="
        )
    return TenantWorkflowBinding(inner, metadata)


def platform_env() -> Any:
    env = current_env.get(None)
    if env is None:
        raise DynwfError(
            "wrap_workflow_binding() was called outside the platform worker: call it while "
            "the dispatcher handles a request or a workflow pass (e.g. in load_runner)"
        )
    return env


def exported_classes(module: types.ModuleType) -> dict[str, type]:
    """The classes Cloudflare registers on ``cloudflare:workers`` exports for a main module:
    entrypoint subclasses among ``__all__`` if it has one, else its public names."""
    keys = (
        module.__all__
        if hasattr(module, "__all__")
        else [k for k in dir(module) if not k.startswith("_")]
    )
    found: dict[str, type] = {}
    for key in keys:
        value = getattr(module, key, None)
        if (
            inspect.isclass(value)
            and issubclass(value, (WorkerEntrypoint, WorkflowEntrypoint))
            and value not in (WorkerEntrypoint, WorkflowEntrypoint)
        ):
            found[key] = value
    return found


# -- dynwf's older names: one more release, with a warning that shows the new form ------

_NEW_IMPORT = (
    "from dynamic_workflows import DynamicWorkflowBinding, "
    "create_dynamic_workflow_entrypoint, wrap_workflow_binding"
)


# Every warning below contains this, so the CLI can show them (Python hides
# DeprecationWarning outside ``__main__`` by default).
DEPRECATED = "is deprecated and cannot run on Cloudflare"


def deprecated(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that dynwf's older dispatcher form ``old`` is going; show the form that stays."""
    warnings.warn(f"{old} {DEPRECATED}; write {new}", DeprecationWarning, stacklevel=stacklevel)


def show_deprecations() -> None:
    """Show dynwf's deprecation warnings once per place (for the command line)."""
    warnings.filterwarnings("default", message=f".*{DEPRECATED}", category=DeprecationWarning)


def _deprecated(old: str, new: str) -> None:
    deprecated(old, f"{new} (with `{_NEW_IMPORT}` in the dispatcher's main module)", stacklevel=4)


def wrap_workflow_binding(
    metadata: Any, *, binding_name: str = "WORKFLOWS", env: Any = None
) -> TenantWorkflowBinding:
    """Deprecated: ``dynamic_workflows.wrap_workflow_binding(metadata, binding_name=...)``."""
    _deprecated(
        "dynwf.dispatch.wrap_workflow_binding(..., env=env)",
        "wrap_workflow_binding(metadata, binding_name=...) with no env=",
    )
    return tenant_binding(env if env is not None else platform_env(), metadata, binding_name)


LoadRunner = Callable[[dict[str, Any]], Any]


async def dispatch_workflow(
    entrypoint: WorkflowEntrypoint, event: Any, step: Any, load_runner: LoadRunner
) -> Any:
    """Deprecated: ``dynamic_workflows.dispatch_workflow(env=, ctx=, event=, step=, load_runner=)``."""
    _deprecated(
        "dynwf.dispatch.dispatch_workflow(entrypoint, event, step, load_runner)",
        "dispatch_workflow(env=self.env, ctx=self.ctx, event=event, step=step, "
        "load_runner=load_runner)",
    )
    from dynwf.compat.dynamic_workflows import dispatch_workflow as new

    return await new(
        env=entrypoint.env, ctx=entrypoint.ctx, event=event, step=step, load_runner=load_runner
    )


def create_dynamic_workflow_entrypoint(
    load_runner: Callable[[dict[str, Any]], Any | Awaitable[Any]],
) -> type[WorkflowEntrypoint]:
    """Deprecated: ``dynamic_workflows.create_dynamic_workflow_entrypoint(load_runner)``."""
    _deprecated(
        "dynwf.dispatch.create_dynamic_workflow_entrypoint",
        "create_dynamic_workflow_entrypoint(load_runner) from dynamic_workflows",
    )
    from dynwf.compat.dynamic_workflows import create_dynamic_workflow_entrypoint as new

    cls: type[WorkflowEntrypoint] = new(load_runner)
    return cls


class PlatformExports:
    """``ctx.exports`` of the platform worker: each class its main module exports, as a
    factory taking ``{"props": ...}`` and giving an instance bound to those props."""

    def __init__(self, env: Any, main: Callable[[], types.ModuleType | None]) -> None:
        self._env, self._main = env, main

    def __getattr__(self, name: str) -> Any:
        main = self._main()
        cls = exported_classes(main).get(name) if main is not None else None
        if cls is None:
            raise AttributeError(f"the dispatcher's main module exports no class {name!r}")

        def factory(options: Any = None) -> Any:
            from dynwf.compat._jsobject import to_py
            from dynwf.workers._context import ExecutionContext

            opts = to_py(options) or {}
            return cls(ExecutionContext(props=opts.get("props") or {}, exports=self), self._env)

        return factory
