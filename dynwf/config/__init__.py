"""Project config: read wrangler.toml / wrangler.jsonc and validate it as wrangler does."""

from __future__ import annotations

from dynwf.config._load import CONFIG_FILE_NAMES, find_config, load_config, validate_config
from dynwf.config._model import (
    Diagnostic,
    InvalidConfigError,
    ProjectConfig,
    Severity,
    ValidationReport,
    WorkerLoaderConfig,
    WorkflowConfig,
)
from dynwf.config._source import ConfigFileError, Location

__all__ = [
    "CONFIG_FILE_NAMES",
    "ConfigFileError",
    "Diagnostic",
    "InvalidConfigError",
    "Location",
    "ProjectConfig",
    "Severity",
    "ValidationReport",
    "WorkerLoaderConfig",
    "WorkflowConfig",
    "find_config",
    "load_config",
    "validate_config",
]
