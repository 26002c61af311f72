"""Checks only dynwf can make, because it can read and import the Worker's Python.

``main`` is imported in a child interpreter (``sys.executable``) so user code, its
``sys.path`` edits and its module cache never touch the validating process.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from dynwf.config._rules import BINDING_KINDS, Findings, binding_names, parse_compatibility_date
from dynwf.config._source import Location, Node

WORKFLOWS_MINIMUM_DATE = date(2024, 10, 22)
IMPORT_TIMEOUT_SECONDS = 60.0
_LOADER_METHODS = frozenset({"get", "load"})

# Runs in the child. Prints go to stderr so the one JSON line on stdout is ours, and
# os._exit skips user atexit hooks and non-daemon threads that could hang the probe.
_PROBE = r"""
import importlib.util, inspect, json, os, sys, traceback
out, sys.stdout = sys.stdout, sys.stderr
main, project, wanted = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def where(file, line, column):
    return {"file": os.path.abspath(file), "line": line or 1, "column": column or 1}
def in_project(file):
    path = os.path.abspath(file)
    return path.startswith(project + os.sep) and "site-packages" not in path
try:
    from dynwf.workers import WorkflowEntrypoint, install
    install()
    # Python Workers resolve imports from the directory holding main.
    sys.path.insert(0, os.path.dirname(main))
    name = os.path.splitext(os.path.basename(main))[0]
    spec = importlib.util.spec_from_file_location(name, main)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
except BaseException as exc:
    if isinstance(exc, SyntaxError) and exc.filename and exc.filename.startswith(os.sep):
        at = where(exc.filename, exc.lineno, exc.offset)
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if in_project(f.filename)]
        last = frames[-1] if frames else None
        at = where(last.filename, last.lineno, (last.colno or 0) + 1) if last else where(main, 1, 1)
    result = {"error": {"type": type(exc).__name__, "message": str(exc), **at}}
else:
    classes = {}
    for cls_name in wanted:
        obj = getattr(module, cls_name, None)
        found = None
        if isinstance(obj, type):
            try:
                found = where(inspect.getsourcefile(obj), inspect.getsourcelines(obj)[1], 1)
            except (OSError, TypeError):
                pass
        status = ("missing" if obj is None else "not_class" if not isinstance(obj, type)
                  else "ok" if issubclass(obj, WorkflowEntrypoint) else "not_subclass")
        classes[cls_name] = {"status": status, "at": found}
    result = {"error": None, "classes": classes}
out.write(json.dumps(result) + "\n")
out.flush()
os._exit(0)
"""


@dataclass(frozen=True, slots=True)
class _ClassUse:
    """A workflow entry whose ``class_name`` must be defined in ``main``."""

    field: str
    class_name: str
    location: Location


def check_dynwf_rules(
    root: Node, config_path: Path, findings: Findings, *, import_main: bool = True
) -> None:
    """Dates, ``main`` importing (unless ``import_main`` is False), workflow classes, Loaders."""
    scopes = [("", root)]
    envs = root.get("env")
    if envs is not None and envs.is_object():
        scopes += [(f"env.{name}.", env) for name, env in envs.children.items() if env.is_object()]
    _check_dates(root, scopes, findings)
    uses: dict[Path, list[_ClassUse]] = {}
    # Envs that inherit main share the top level's; each distinct main is checked once.
    main_paths: dict[Location, Path | None] = {}
    for prefix, scope in scopes:
        own = scope.get("main")
        main = own if own is not None or not prefix else root.get("main")
        if main is None and prefix:
            continue
        key = main.location if main is not None else root.location
        if key not in main_paths:
            main_paths[key] = _check_main(main, prefix, config_path, root, findings)
        if (main_path := main_paths[key]) is not None:
            uses.setdefault(main_path, []).extend(_class_uses(scope, prefix))
    for main_path, class_uses in uses.items() if import_main else ():
        _probe_main(main_path, config_path, class_uses, findings)
    top_main = root.get("main")
    if top_main is not None and (top_path := _main_path(top_main, config_path)) is not None:
        _check_loader_uses(top_path, root, config_path, findings)


def _today() -> date:
    # Whichever is later of local and UTC "today", so no one east or west of UTC is
    # told their current date is in the future.
    return max(date.today(), datetime.now(UTC).date())


def _check_dates(root: Node, scopes: list[tuple[str, Node]], findings: Findings) -> None:
    if all(scope.get("compatibility_date") is None for _, scope in scopes):
        findings.error(
            "dynwf.compatibility-date.missing",
            f'"compatibility_date" is missing; add compatibility_date = "{_today()}" (today, or '
            f"an earlier date). Workflows need {WORKFLOWS_MINIMUM_DATE} or later.",
            root.location,
        )
        return
    for prefix, scope in scopes:
        node = scope.get("compatibility_date")
        if node is None or not isinstance(node.value, str):
            continue
        day = parse_compatibility_date(node.value)
        if day is None:
            continue  # wrangler's format rule already reported it
        if day > _today():
            findings.error(
                "dynwf.compatibility-date.future",
                f'"{prefix}compatibility_date" {day} is in the future (today is {_today()}); the '
                "Workers runtime rejects future dates. Use today's date or an earlier one.",
                node.location,
            )
        # The top level's date also applies to every env that does not set its own.
        governed = (
            [scope]
            if prefix
            else [s for _, s in scopes if s is root or s.get("compatibility_date") is None]
        )
        if day < WORKFLOWS_MINIMUM_DATE and any(_has_workflows(s) for s in governed):
            findings.error(
                "dynwf.compatibility-date.workflows-minimum",
                f'"{prefix}compatibility_date" {day} is too early: Workflows need a '
                f"compatibility_date of {WORKFLOWS_MINIMUM_DATE} or later.",
                node.location,
            )


def _has_workflows(scope: Node) -> bool:
    workflows = scope.get("workflows")
    return workflows is not None and bool(workflows.items)


def _main_path(main: Node, config_path: Path) -> Path | None:
    if not isinstance(main.value, str) or not main.value.endswith(".py"):
        return None
    path = (config_path.parent / main.value).resolve()
    return path if path.is_file() else None


def _check_main(
    main: Node | None, prefix: str, config_path: Path, root: Node, findings: Findings
) -> Path | None:
    if main is None:
        if prefix:
            return None
        findings.error(
            "dynwf.main.missing",
            '"main" is missing; dynwf imports it to find the Worker\'s classes. Add '
            'main = "src/entry.py" (the path of your entry module).',
            root.location,
        )
        return None
    if not isinstance(main.value, str):
        return None  # wrangler's type rule already reported it
    if not main.value.endswith(".py"):
        findings.error(
            "dynwf.main.not-python",
            f'"{prefix}main" is {json.dumps(main.value, ensure_ascii=False)}, but dynwf runs Python Workers only; point '
            '"main" at a .py module.',
            main.location,
        )
        return None
    path = (config_path.parent / main.value).resolve()
    if not path.is_file():
        findings.error(
            "dynwf.main.not-found",
            f'"{prefix}main" file {main.value} does not exist (looked for {path}).',
            main.location,
        )
        return None
    return path


def _class_uses(scope: Node, prefix: str) -> list[_ClassUse]:
    workflows = scope.get("workflows")
    if workflows is None or not workflows.is_array():
        return []
    uses = []
    for index, entry in enumerate(workflows.items):
        class_name = entry.get("class_name")
        if class_name is None or not isinstance(class_name.value, str):
            continue
        if entry.get("script_name") is not None:
            continue  # the class lives in another Worker; nothing here to import
        uses.append(_ClassUse(f"{prefix}workflows[{index}]", class_name.value, class_name.location))
    return uses


def _probe_main(main: Path, config_path: Path, uses: list[_ClassUse], findings: Findings) -> None:
    project = config_path.parent.resolve()
    wanted = sorted({use.class_name for use in uses})
    env = dict(os.environ)
    # The child must import this same dynwf even when it runs from a source checkout.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    shown = _shown(main, project)
    try:
        completed = subprocess.run(
            [sys.executable, "-c", _PROBE, str(main), str(project), json.dumps(wanted)],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        findings.error(
            "dynwf.main.import-timeout",
            f"Importing {shown} did not finish within {IMPORT_TIMEOUT_SECONDS:.0f} seconds; "
            "move slow work out of module level.",
            Location(main, 1, 1),
        )
        return
    lines = completed.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        detail = completed.stderr.strip().splitlines()[-1:] or [f"exit code {completed.returncode}"]
        findings.error(
            "dynwf.main.import-error",
            f"Importing {shown} crashed the interpreter: {detail[0]}",
            Location(main, 1, 1),
        )
        return
    error = result["error"]
    if error is not None:
        at = Location(Path(error["file"]), int(error["line"]), int(error["column"]))
        findings.error(
            "dynwf.main.import-error",
            f"Importing {shown} failed: {error['type']}: {error['message']}",
            at,
        )
        return
    for use in uses:
        found = result["classes"][use.class_name]
        status = found["status"]
        if status == "missing":
            findings.error(
                "dynwf.workflows.class-missing",
                f'"{use.field}" class_name "{use.class_name}" is not defined in {shown}; define '
                f"it there, or set script_name if it lives in another Worker.",
                use.location,
            )
        elif status != "ok":
            at = found["at"]
            defined = (
                f" ({_shown(Path(at['file']), project)}:{at['line']})" if at else f" in {shown}"
            )
            what = (
                "is not a class"
                if status == "not_class"
                else "is not a WorkflowEntrypoint subclass"
            )
            findings.error(
                "dynwf.workflows.class-not-workflow",
                f'"{use.field}" class_name "{use.class_name}"{defined} {what}; '
                "define it as "
                f"`class {use.class_name}(WorkflowEntrypoint)` with "
                "`from workers import WorkflowEntrypoint`.",
                use.location,
            )


def _shown(path: Path, project: Path) -> str:
    try:
        return path.relative_to(project).as_posix()
    except ValueError:
        return str(path)


def _check_loader_uses(main: Path, root: Node, config_path: Path, findings: Findings) -> None:
    """``env.X.get(id, code)`` / ``env.X.load(...)`` with X not a declared Worker Loader."""
    try:
        tree = ast.parse(main.read_text(encoding="utf-8"), filename=str(main))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return  # the import probe reports why main cannot be read
    loaders = root.get("worker_loaders")
    declared_loaders = (
        {name for name, _ in binding_names(loaders, "worker_loaders")} if loaders else set()
    )
    other_bindings = {
        name
        for kind in BINDING_KINDS
        if kind != "worker_loaders" and (value := root.get(kind)) is not None
        for name, _ in binding_names(value, kind)
    }
    reported: set[str] = set()
    for name, node in _loader_like_uses(tree):
        if name in declared_loaders or name in other_bindings or name in reported:
            continue
        reported.add(name)
        hint = (
            f'[[worker_loaders]] binding = "{name}"'
            if config_path.suffix == ".toml"
            else f'{{"binding": "{name}"}} to "worker_loaders"'
        )
        findings.error(
            "dynwf.worker-loaders.undeclared",
            f"env.{name} is used as a Worker Loader in {_shown(main, config_path.parent)} but "
            f'"{name}" is not declared in "worker_loaders"; add {hint} in {config_path.name}.',
            Location(main, node.lineno, node.col_offset + 1),
        )


def _loader_like_uses(tree: ast.AST) -> list[tuple[str, ast.Attribute]]:
    """``env.NAME`` attributes that look like Worker Loader use, in source order."""
    found: list[tuple[str, ast.Attribute]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, target = node.func.attr, node.func.value
            if method not in _LOADER_METHODS or not _is_env_attribute(target):
                continue
            assert isinstance(target, ast.Attribute)
            # A Workflow binding's get() takes one id; a loader's takes an id and the
            # callback that returns the code, which tells the two apart.
            if method == "load" or len(node.args) + len(node.keywords) >= 2:
                found.append((target.attr, target))
        elif _is_env_attribute(node):
            assert isinstance(node, ast.Attribute)
            if "LOADER" in node.attr.upper():
                found.append((node.attr, node))
    return sorted(found, key=lambda item: (item[1].lineno, item[1].col_offset))


def _is_env_attribute(node: ast.AST) -> bool:
    """``env.X`` or ``<anything>.env.X`` (``self.env.X`` in an entrypoint)."""
    if not isinstance(node, ast.Attribute):
        return False
    owner = node.value
    return (isinstance(owner, ast.Name) and owner.id == "env") or (
        isinstance(owner, ast.Attribute) and owner.attr == "env"
    )
