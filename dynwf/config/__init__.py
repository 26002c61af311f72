"""Project config: read wrangler.toml / wrangler.jsonc and validate it as wrangler does."""

from __future__ import annotations

from dynwf.config._cron import Cron, CronError, parse_cron
from dynwf.config._load import (
    CONFIG_FILE_NAMES,
    check_portability,
    find_config,
    load_config,
    read_config,
    validate_config,
    validate_project,
)
from dynwf.config._model import (
    Diagnostic,
    InvalidConfigError,
    ProjectConfig,
    Severity,
    ValidationReport,
    WorkerLoaderConfig,
    WorkflowConfig,
)
from dynwf.config._portability_rules import RULES as PORTABILITY_RULES
from dynwf.config._portability_rules import Rule as PortabilityRule
from dynwf.config._source import ConfigFileError, Location

__all__ = [
    "CONFIG_FILE_NAMES",
    "PORTABILITY_RULES",
    "ConfigFileError",
    "Cron",
    "CronError",
    "Diagnostic",
    "InvalidConfigError",
    "Location",
    "PortabilityRule",
    "ProjectConfig",
    "Severity",
    "ValidationReport",
    "WorkerLoaderConfig",
    "WorkflowConfig",
    "check_portability",
    "find_config",
    "load_config",
    "parse_cron",
    "read_config",
    "validate_config",
    "validate_project",
]
