"""Every error dynwf raises, one tree rooted at ``DynwfError``.

    DynwfError                     anything dynwf itself rejects or cannot do
    ├── ValidationError            bad input: names the value, the rule, what to do
    │   ├── InvalidDurationError   a duration string with an unknown unit or shape
    │   ├── InvalidStepConfigError a step config that breaks the retry/timeout rules
    │   └── PayloadError           not a JSON value, or larger than 1 MiB
    ├── InstanceNotFoundError      no such instance (or not visible to this tenant)
    ├── InstanceExistsError        ``create`` with an id already in use
    ├── InvalidStateError          an operation the instance's status does not allow
    ├── WorkflowNotFoundError      no workflow registered under that name/binding
    ├── AmbiguousInstanceError     an id several workflows/tenants use (dynwf.client)
    ├── JournalError               the journal file cannot be opened, is damaged or not ours
    │   ├── StateNotFoundError     no journal where the state should be (dynwf.client)
    │   ├── JournalInUseError      another process holds the journal (names its PID)
    │   ├── JournalDataLossError   facts its last writer committed are missing from it
    │   └── JournalCommitError     a commit failed: the engine stopped (fail-stop)
    ├── ConfigError                a wrangler config that cannot be used
    │   ├── ConfigFileError        missing, unreadable or unparseable (dynwf.config)
    │   └── InvalidConfigError     breaks wrangler's or dynwf's rules (dynwf.config)
    ├── ProjectError               the dispatcher does not import or lacks a class (dynwf.project)
    ├── CodeLoadError              a tenant's code does not load (dynwf.dispatch)
    ├── MissingDispatcherMetadataError  a dynamic workflow run without its envelope
    ├── ServerError                the dev server cannot start, e.g. port in use (dynwf.server)
    ├── DevServerError             a running dev server answered unexpectedly (dynwf.client)
    └── RunError                   a ``dynwf run`` that could not be carried out (dynwf.run)

Subclasses defined in a subpackage live next to the code that raises them; the CLI
turns any ``DynwfError`` into one line on stderr (exit 1, or 2 for a ValidationError
from the command line) and never shows a traceback for one.

Errors raised *inside* a workflow (a step's own exception, ``NonRetryableError``,
``WorkflowTimeoutError``) are tenant-facing and live in ``dynwf.workers.workflows``;
in the journal they are data, ``{"name", "message"}``, never pickled objects.
"""

from __future__ import annotations


class DynwfError(Exception):
    """Base of every error dynwf raises on its own account."""


class ValidationError(DynwfError, ValueError):
    """Input that breaks a documented rule; nothing was changed."""


class InvalidDurationError(ValidationError):
    """A duration that is neither milliseconds nor ``"<number> <unit>"``."""


class InvalidStepConfigError(ValidationError):
    """A step config whose retries or timeout break the rules."""


class PayloadError(ValidationError, TypeError):
    """A value that is not JSON-representable or is larger than the limit."""


class InstanceNotFoundError(DynwfError, LookupError):
    """No instance with that id (for this tenant)."""

    code = "instance.not_found"


class InstanceExistsError(DynwfError):
    """An instance with that id already exists."""


class InvalidStateError(DynwfError):
    """The instance's status does not allow the operation."""


class WorkflowNotFoundError(DynwfError, LookupError):
    """No workflow is registered under that name or binding."""


class JournalError(DynwfError):
    """The journal file cannot be used."""


class JournalInUseError(JournalError):
    """Another process holds the journal open (DuckDB allows one writer, or readers)."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class JournalDataLossError(JournalError):
    """The journal holds fewer facts than its last writer committed (e.g. a lost ``.wal``)."""


class JournalCommitError(JournalError):
    """A journal commit failed; the engine stopped acknowledging and running anything."""


class ConfigError(DynwfError):
    """A wrangler config file that cannot be read or parsed."""


class MissingDispatcherMetadataError(DynwfError):
    """A dynamic workflow was started without the dispatcher envelope."""
