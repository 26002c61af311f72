"""Dynamic dispatch: the dispatcher API, the Worker Loader, isolates, tenant scoping, reload."""

from dynwf.dispatch._api import (
    TenantWorkflowBinding,
    create_dynamic_workflow_entrypoint,
    current_env,
    dispatch_workflow,
    wrap_workflow_binding,
)
from dynwf.dispatch._envelope import ENVELOPE_KEY, scope_of
from dynwf.dispatch._isolate import IsolateLimits
from dynwf.dispatch._loader import CodeLoadError, EntrypointStub, WorkerLoader, WorkerStub
from dynwf.errors import MissingDispatcherMetadataError

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
    "wrap_workflow_binding",
]
