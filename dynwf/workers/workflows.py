"""Errors a workflow raises or sees: ``from workers.workflows import NonRetryableError``."""

from __future__ import annotations


class NonRetryableError(Exception):
    """Raise from a step to stop its retries at once (recognised by class)."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(message, *args) if args else super().__init__(message)
        self.message = message


class WorkflowTimeoutError(Exception):
    """An attempt ran past its timeout, or a ``wait_for_event`` timed out."""


class WorkflowInternalError(Exception):
    """An attempt cut off by the engine itself (a crash, an eviction)."""


class WorkflowStepError(Exception):
    """A step error replayed from the journal whose class is not a builtin.

    Subclasses are made per recorded name so ``type(exc).__name__`` is the name
    the step originally raised.
    """


__all__ = [
    "NonRetryableError",
    "WorkflowInternalError",
    "WorkflowStepError",
    "WorkflowTimeoutError",
]
