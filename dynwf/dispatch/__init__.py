"""Dynamic dispatch: the dispatcher API, the Worker Loader, isolates, tenant scoping, reload.

Dispatcher code imports ``dynamic_workflows`` (Cloudflare's names, see ``dynwf.compat``);
``wrap_workflow_binding``, ``create_dynamic_workflow_entrypoint`` and ``dispatch_workflow``
here are dynwf's older forms, kept one release with a DeprecationWarning.

Names are imported on first use (PEP 562), so a process that needs one part
(an isolate needs the tenant-side step code) does not load the rest (the journal, DuckDB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynwf._lazy import lazy_namespace

if TYPE_CHECKING:
    from dynwf.dispatch._api import (
        TenantWorkflowBinding,
        create_dynamic_workflow_entrypoint,
        current_env,
        dispatch_workflow,
        tenant_binding,
        wrap_workflow_binding,
    )
    from dynwf.dispatch._envelope import ENVELOPE_KEY, scope_of
    from dynwf.dispatch._isolate import IsolateLimits
    from dynwf.dispatch._loader import CodeLoadError, EntrypointStub, WorkerLoader, WorkerStub
    from dynwf.errors import MissingDispatcherMetadataError

_WHERE = {
    "CodeLoadError": "dynwf.dispatch._loader",
    "ENVELOPE_KEY": "dynwf.dispatch._envelope",
    "EntrypointStub": "dynwf.dispatch._loader",
    "IsolateLimits": "dynwf.dispatch._isolate",
    "MissingDispatcherMetadataError": "dynwf.errors",
    "TenantWorkflowBinding": "dynwf.dispatch._api",
    "WorkerLoader": "dynwf.dispatch._loader",
    "WorkerStub": "dynwf.dispatch._loader",
    "create_dynamic_workflow_entrypoint": "dynwf.dispatch._api",
    "current_env": "dynwf.dispatch._api",
    "dispatch_workflow": "dynwf.dispatch._api",
    "scope_of": "dynwf.dispatch._envelope",
    "tenant_binding": "dynwf.dispatch._api",
    "wrap_workflow_binding": "dynwf.dispatch._api",
}

__all__ = [
    "ENVELOPE_KEY",
    "CodeLoadError",
    "EntrypointStub",
    "IsolateLimits",
    "MissingDispatcherMetadataError",
    "TenantWorkflowBinding",
    "WorkerLoader",
    "WorkerStub",
    "create_dynamic_workflow_entrypoint",
    "current_env",
    "dispatch_workflow",
    "scope_of",
    "tenant_binding",
    "wrap_workflow_binding",
]


__getattr__, __dir__ = lazy_namespace(__name__, _WHERE, globals())
