"""``dynwf run``: one instance, driven through real crashes and evictions, then a report."""

from dynwf.run._spec import StepPoint, parse_point
from dynwf.run._supervise import (
    EXIT_COMPLETE,
    EXIT_FAILED,
    EXIT_USAGE,
    EXIT_WAITING,
    RunError,
    RunReport,
    pick_workflow,
    run_workflow,
)

__all__ = [
    "EXIT_COMPLETE",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_WAITING",
    "RunError",
    "RunReport",
    "StepPoint",
    "parse_point",
    "pick_workflow",
    "run_workflow",
]
