"""The typed project config dynwf runs from, and the diagnostics validation produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from dynwf.config._source import Location
from dynwf.errors import ConfigError

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding: wrangler's message text where wrangler has one, and where it applies.

    ``code`` is stable: ``wrangler.*`` for rules wrangler itself enforces, ``dynwf.*``
    for checks only dynwf can make (``dynwf.portability.*`` for what would fail on
    Cloudflare, with ``portable``: the form to write instead). ``line``/``column`` are 1-based.
    """

    severity: Severity
    message: str
    file: str
    line: int
    column: int
    code: str
    portable: str | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every diagnostic for one config file; valid when none is an error."""

    config_path: Path
    diagnostics: tuple[Diagnostic, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "warning")

    @property
    def valid(self) -> bool:
        return not self.errors


class InvalidConfigError(ConfigError):
    """A config file that parses but breaks wrangler's or dynwf's rules (see ``report``)."""

    def __init__(self, report: ValidationReport) -> None:
        lines = [f"{report.config_path} is not a valid wrangler config:"]
        lines += [f"  {d.where}: {d.message}" for d in report.errors]
        lines.append("Run `dynwf validate` for every diagnostic.")
        super().__init__("\n".join(lines))
        self.report = report


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    """One ``[[workflows]]`` binding."""

    name: str
    binding: str
    class_name: str
    script_name: str | None
    step_limit: int | None
    location: Location
    schedules: tuple[str, ...] = ()  # cron expressions, as written (checked by validation)
    concurrency_limit: int | None = None  # workflows[].concurrency.limit


@dataclass(frozen=True, slots=True)
class WorkerLoaderConfig:
    """One ``[[worker_loaders]]`` binding (the Dynamic Worker Loader)."""

    binding: str
    location: Location


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """The fields dynwf reads, resolved for the top level or for one ``env.<name>``.

    ``envs`` maps each environment name to its own resolved ``ProjectConfig``: with
    ``main``, ``compatibility_*`` and ``cpu_ms`` inherited from the top level and
    ``workflows``/``worker_loaders`` not inherited, as wrangler resolves ``--env``.
    """

    path: Path
    name: str | None
    main: Path | None
    compatibility_date: date | None
    compatibility_flags: tuple[str, ...]
    workflows: tuple[WorkflowConfig, ...]
    worker_loaders: tuple[WorkerLoaderConfig, ...]
    cpu_ms: int | None
    env_name: str | None = None
    envs: Mapping[str, ProjectConfig] = field(default_factory=lambda: MappingProxyType({}))

    def workflow(self, binding: str) -> WorkflowConfig:
        """The workflow bound as ``env.<binding>``; ``KeyError`` if there is none."""
        for workflow in self.workflows:
            if workflow.binding == binding:
                return workflow
        raise KeyError(binding)
