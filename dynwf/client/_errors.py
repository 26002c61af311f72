"""What can go wrong reading or steering instances: one class per kind of failure.

    DynwfError                       (dynwf.errors)
    ├── InstanceNotFoundError        (dynwf.errors) no instance with that id where it was looked for
    ├── AmbiguousInstanceError       the id names instances in several workflows or tenants
    ├── WorkflowNotFoundError        (dynwf.errors) no workflow of that name
    ├── InvalidStateError            (dynwf.errors) the instance's status does not allow it
    ├── ValidationError              (dynwf.errors) a bad status filter, event type or payload
    ├── JournalError                 (dynwf.errors)
    │   ├── StateNotFoundError       no journal in the state directory
    │   └── JournalInUseError        (dynwf.errors) another process holds the journal, no dev API serves it
    └── DevServerError               the dev server answered with an error or stopped answering

Every message says what is wrong, where (instance id, workflow, tenant, journal
path or dev server URL) and what to do.
"""

from __future__ import annotations

from dynwf.errors import DynwfError, JournalError, JournalInUseError

__all__ = [
    "AmbiguousInstanceError",
    "DevServerError",
    "JournalInUseError",
    "StateNotFoundError",
]


class AmbiguousInstanceError(DynwfError, LookupError):
    """The id exists in several workflows or tenants and nothing said which one."""

    def __init__(self, message: str, places: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.places = places  # (workflow, tenant) pairs


class StateNotFoundError(JournalError):
    """The state directory holds no journal: nothing has run there yet."""


class DevServerError(DynwfError):
    """The running ``dynwf dev`` answered with an error, or stopped answering."""
