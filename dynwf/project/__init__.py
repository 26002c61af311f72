"""A platform project: its config, dispatcher, loaders, engine and state directory."""

from dynwf.project._project import Project, state_dir_for

__all__ = ["Project", "state_dir_for"]
