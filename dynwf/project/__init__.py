"""A platform project: its config, dispatcher, loaders, engine and state directory."""

from dynwf.project._project import Project, ProjectError, state_dir_for
from dynwf.project._reload import ReloadResult, reload_now, watch
from dynwf.project._schedules import Schedule, Scheduler, schedule_instance_id

__all__ = [
    "Project",
    "ProjectError",
    "ReloadResult",
    "Schedule",
    "Scheduler",
    "reload_now",
    "schedule_instance_id",
    "state_dir_for",
    "watch",
]
