"""Reads and steers instances: through a running dev server, else straight from the journal."""

from dynwf.client._errors import (
    AmbiguousInstanceError,
    DevServerError,
    JournalInUseError,
    StateNotFoundError,
)
from dynwf.client._http import HttpStateClient
from dynwf.client._journal import JournalStateClient
from dynwf.client._model import (
    STATUSES,
    InstanceDetail,
    InstanceSummary,
    StateClient,
    Steered,
    envelope,
    tenant_arg,
    tenant_label,
    tenant_params,
    tenant_scopes,
)
from dynwf.client._open import JOURNAL_FILE, PERSIST_ENV, STATE_DIR, open_state
from dynwf.client._schedules import Fired, trigger_schedule

__all__ = [
    "JOURNAL_FILE",
    "PERSIST_ENV",
    "STATE_DIR",
    "STATUSES",
    "AmbiguousInstanceError",
    "DevServerError",
    "Fired",
    "HttpStateClient",
    "InstanceDetail",
    "InstanceSummary",
    "JournalInUseError",
    "JournalStateClient",
    "StateClient",
    "StateNotFoundError",
    "Steered",
    "envelope",
    "open_state",
    "tenant_arg",
    "tenant_label",
    "tenant_params",
    "tenant_scopes",
    "trigger_schedule",
]
