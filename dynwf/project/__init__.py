"""A platform project: its config, dispatcher, loaders, engine and state directory."""

from dynwf.project._project import Project, ProjectError, state_dir_for
from dynwf.project._reload import ReloadResult, reload_now, watch

__all__ = ["Project", "ProjectError", "ReloadResult", "reload_now", "state_dir_for", "watch"]
