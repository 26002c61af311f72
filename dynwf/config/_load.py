"""Finding the config file, validating it, and turning a valid one into ``ProjectConfig``."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from dynwf.config._checks import check_dynwf_rules
from dynwf.config._jsonc import parse_jsonc
from dynwf.config._model import (
    InvalidConfigError,
    ProjectConfig,
    ValidationReport,
    WorkerLoaderConfig,
    WorkflowConfig,
)
from dynwf.config._portability import check_portability_root
from dynwf.config._rules import Findings, check_wrangler_rules, parse_compatibility_date
from dynwf.config._schedules import check_schedules, schedules_of
from dynwf.config._source import ConfigFileError, Node, is_js_integer, js_json
from dynwf.config._toml import parse_toml

# wrangler's own lookup order is wrangler.json, wrangler.jsonc, wrangler.toml; dynwf
# looks for the TOML file first because that is what its templates and docs use.
CONFIG_FILE_NAMES = ("wrangler.toml", "wrangler.jsonc", "wrangler.json")


def find_config(path_or_dir: str | Path) -> Path:
    """The file ``path_or_dir`` names, or the first of ``CONFIG_FILE_NAMES`` in that directory.

    Raises ``ConfigFileError`` when there is no such file.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        for name in CONFIG_FILE_NAMES:
            if (path / name).is_file():
                return (path / name).resolve()
        raise ConfigFileError(
            f"no {', '.join(CONFIG_FILE_NAMES)} in this directory; pass the file with --config",
            path.resolve(),
        )
    if not path.exists():
        raise ConfigFileError("config file does not exist", path.resolve())
    if path.suffix not in (".toml", ".json", ".jsonc"):
        raise ConfigFileError(
            "unsupported config file type; use wrangler.toml, wrangler.jsonc or wrangler.json",
            path.resolve(),
        )
    return path.resolve()


def _read(path: Path) -> Node:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"not UTF-8 text ({exc.reason})", path) from exc
    except OSError as exc:
        raise ConfigFileError(f"cannot read the file ({exc.strerror or exc})", path) from exc
    text = text.removeprefix("\ufeff")
    root = parse_toml(text, path) if path.suffix == ".toml" else parse_jsonc(text, path)
    if not root.is_object():
        raise ConfigFileError(
            f"the top level must be an object, but got {js_json(root.value)}",
            path,
            root.location.line,
            root.location.column,
        )
    return root


def _validate(
    path_or_dir: str | Path, *, import_main: bool = True
) -> tuple[ValidationReport, Node]:
    path = find_config(path_or_dir)
    root = _read(path)
    findings = Findings()
    check_wrangler_rules(root, findings)
    check_dynwf_rules(root, path, findings, import_main=import_main)
    check_schedules(root, path, findings)
    return ValidationReport(path, tuple(findings.diagnostics)), root


def validate_config(path_or_dir: str | Path) -> ValidationReport:
    """Every diagnostic for a config file, or the first wrangler file in a directory.

    Imports ``main`` in a child interpreter to check it. Raises ``ConfigFileError`` (a
    ``ConfigError``) when the file is missing, unreadable or unparseable.
    """
    return _validate(path_or_dir)[0]


def read_config(path_or_dir: str | Path) -> tuple[Path, dict[str, object]]:
    """The config file's path and its plain parsed value, unvalidated (``ConfigFileError``)."""
    path = find_config(path_or_dir)
    value = _read(path).value
    assert isinstance(value, dict)  # _read refuses a top level that is not an object
    return path, value


def check_portability(path_or_dir: str | Path) -> ValidationReport:
    """Portability findings only: what in the dispatcher and tenants would fail on Cloudflare.

    Reads (never imports) ``main``, every other module in its folder and every module
    under ``tenants/*/``. Raises ``ConfigFileError`` like ``validate_config``.
    """
    path = find_config(path_or_dir)
    return check_portability_root(_read(path), path)


def validate_project(path_or_dir: str | Path, *, import_main: bool = True) -> ValidationReport:
    """``validate_config`` plus ``check_portability``: everything ``dynwf validate`` reports.

    ``import_main=False`` skips importing ``main`` under dynwf (``dynwf build`` checks
    the code for Cloudflare, where dynwf's own modules do not exist).
    """
    report, root = _validate(path_or_dir, import_main=import_main)
    portability = check_portability_root(root, report.config_path)
    return ValidationReport(report.config_path, report.diagnostics + portability.diagnostics)


def load_config(path_or_dir: str | Path) -> ProjectConfig:
    """The validated config; ``InvalidConfigError`` (a ``ConfigError``) lists any errors.

    Raises ``ConfigFileError`` (also a ``ConfigError``) for a missing or unparseable file.
    """
    report, root = _validate(path_or_dir)
    if not report.valid:
        raise InvalidConfigError(report)
    top = _project(root, root, report.config_path, None)
    envs = root.get("env")
    resolved = {
        name: _project(env, root, report.config_path, name)
        for name, env in (envs.children.items() if envs is not None else ())
    }
    return ProjectConfig(
        path=top.path,
        name=top.name,
        main=top.main,
        compatibility_date=top.compatibility_date,
        compatibility_flags=top.compatibility_flags,
        workflows=top.workflows,
        worker_loaders=top.worker_loaders,
        cpu_ms=top.cpu_ms,
        envs=MappingProxyType(resolved),
    )


def _project(scope: Node, root: Node, path: Path, env_name: str | None) -> ProjectConfig:
    """One resolved scope of a config that passed validation, so the shapes are known."""

    def inherited(key: str) -> object:
        node = scope.get(key)
        if node is None and env_name is not None:
            node = root.get(key)
        return node.value if node is not None else None

    name = inherited("name")
    if env_name is not None and scope.get("name") is None and isinstance(name, str):
        name = f"{name}-{env_name}"  # wrangler's appendEnvName
    main = inherited("main")
    day = inherited("compatibility_date")
    flags = inherited("compatibility_flags")
    limits = inherited("limits")
    cpu_ms = limits.get("cpu_ms") if isinstance(limits, dict) else None
    return ProjectConfig(
        path=path,
        name=name if isinstance(name, str) else None,
        main=(path.parent / main).resolve() if isinstance(main, str) else None,
        compatibility_date=parse_compatibility_date(day) if isinstance(day, str) else None,
        compatibility_flags=tuple(flags) if isinstance(flags, list) else (),
        workflows=tuple(_workflow(entry) for entry in _entries(scope, "workflows")),
        worker_loaders=tuple(
            WorkerLoaderConfig(entry.text("binding") or "", entry.location)
            for entry in _entries(scope, "worker_loaders")
        ),
        cpu_ms=int(cpu_ms) if is_js_integer(cpu_ms) else None,
        env_name=env_name,
    )


def _entries(scope: Node, field: str) -> tuple[Node, ...]:
    value = scope.get(field)
    return value.items if value is not None else ()


def _workflow(entry: Node) -> WorkflowConfig:
    limits = entry.get("limits")
    steps = limits.get("steps") if limits is not None else None
    return WorkflowConfig(
        name=entry.text("name") or "",
        binding=entry.text("binding") or "",
        class_name=entry.text("class_name") or "",
        script_name=entry.text("script_name"),
        step_limit=int(steps.value) if steps is not None and is_js_integer(steps.value) else None,
        location=entry.location,
        schedules=schedules_of(entry),
        concurrency_limit=_concurrency_limit(entry),
    )


def _concurrency_limit(entry: Node) -> int | None:
    concurrency = entry.get("concurrency")
    limit = concurrency.get("limit") if concurrency is not None else None
    return int(limit.value) if limit is not None and is_js_integer(limit.value) else None
