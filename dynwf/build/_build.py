"""Write the tree ``pywrangler deploy`` uploads, check it would deploy, and list what is left.

What Cloudflare gets from a Python Worker project is the main module's folder, the
vendored ``python_modules/``, the wrangler config and ``pyproject.toml`` (which names
``workers-py``, the package that provides ``pywrangler``). Tenant code is not in that
tree: the dispatcher reads it from the ``TENANT_CODE`` KV namespace, whose content
build writes as a file for ``wrangler kv bulk put``.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path

from dynwf.config import Diagnostic, read_config, validate_project
from dynwf.errors import DynwfError
from dynwf.project._tenant_code import tenant_code_entries  # the contract's one copy

DEFAULT_OUT = "dist"
KV_BINDING = "TENANT_CODE"
KV_FILE = "tenant-code.json"
MARKER = ".dynwf-build"
LIBRARY = "dynamic_workflows"
_NAMESPACE_ID = re.compile(r"^[0-9a-f]{32}$")
# Never part of what deploys: dynwf's state, tests, tenants (they go to KV), tool caches.
_SKIPPED = frozenset(
    {"__pycache__", ".dynwf", ".venv", "venv", "node_modules", ".git", "tests", "tenants",
     ".pytest_cache", ".mypy_cache", ".ruff_cache", ".wrangler", "python_modules"}
)  # fmt: skip
_PYPROJECT = """\
# Written by `dynwf build` for `pywrangler deploy` (workers-py). [project].dependencies
# are vendored into python_modules/ by `pywrangler sync`; dynwf itself stays out of them.
[project]
name = "{name}"
version = "0.1.0"
requires-python = ">=3.12"
dependencies = []

[dependency-groups]
dev = ["workers-py", "workers-runtime-sdk"]
"""


class BuildError(DynwfError):
    """``dynwf build`` cannot write its output where it was asked to."""


@dataclass(frozen=True, slots=True)
class Todo:
    """A step left to the user; until a ``blocking`` one is done, the deploy fails."""

    text: str
    command: str | None
    blocking: bool


@dataclass(frozen=True, slots=True)
class BuildReport:
    """What build checked and wrote, and what is left to do before ``pywrangler deploy``."""

    project: Path
    config_path: Path
    out_dir: Path | None
    files: tuple[str, ...]
    diagnostics: tuple[Diagnostic, ...]
    todo: tuple[Todo, ...]
    kv_keys: int

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def deployable(self) -> bool:
        """No error and no blocking step left: ``pywrangler deploy`` of the tree should pass."""
        return not self.errors and not any(t.blocking for t in self.todo)


def build_project(
    project: str | Path = ".", out_dir: str | Path | None = None, *, check_only: bool = False
) -> BuildReport:
    """Check the project deploys to Cloudflare as it is and write the deployable tree.

    ``out_dir`` defaults to ``<project>/dist``; an existing one is replaced only if an
    earlier build wrote it. ``check_only`` writes nothing. Raises ``ConfigFileError``
    for a missing or unparseable config and ``BuildError`` for an unusable ``out_dir``.
    """
    config_path, raw = read_config(project)
    root = config_path.parent
    report = validate_project(config_path, import_main=False)
    diagnostics = list(report.diagnostics)
    main = _main(raw, root)
    out = None if check_only else Path(out_dir or root / DEFAULT_OUT).resolve()
    if main is None:  # validate_project said why
        return BuildReport(root, config_path, out, (), tuple(diagnostics), (), 0)
    if out is not None:
        _check_out_dir(out, root, main)
    files = _shipped(root, main, config_path, out)
    diagnostics += _missing_classes(raw, main)
    diagnostics += _dynwf_imports(root, [f for f in files if f.startswith("python_modules/")])
    pyproject, pyproject_todo = _pyproject(root, raw, diagnostics)
    entries = tenant_code_entries(root)
    todo = [*pyproject_todo, *_library_todo(root, main, files, pyproject)]
    shown_out = _shown(out, root) if out is not None else "."
    todo += _kv_todo(raw, config_path, bool(entries), shown_out if out is not None else None)
    todo.append(
        Todo(
            "deploy the tree",
            f"cd {shown_out} && uv run pywrangler deploy",
            blocking=False,
        )
    )
    written = [*files, "pyproject.toml"]
    if entries:
        written.append(KV_FILE)
    if out is not None:
        _write(out, root, files, pyproject, raw, entries)
    return BuildReport(
        root,
        config_path,
        out,
        tuple(sorted(set(written))),
        tuple(diagnostics),
        tuple(todo),
        len(entries),
    )


def _main(raw: dict[str, object], root: Path) -> Path | None:
    main = raw.get("main")
    if not isinstance(main, str) or not main.endswith(".py"):
        return None
    path = (root / main).resolve()
    return path if path.is_file() else None


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return str(path)


def _check_out_dir(out: Path, root: Path, main: Path) -> None:
    if out == root or out in main.parents or main.parent in (out, *out.parents):
        raise BuildError(
            f"cannot build into {out}: it holds or is inside the main module's folder "
            f"({main.parent}), which is what gets uploaded; pass --out a separate folder "
            f"such as {root / DEFAULT_OUT}"
        )
    if out.exists() and not (out / MARKER).is_file():
        raise BuildError(
            f"{out} exists and was not written by `dynwf build`; remove it or pass --out "
            "another folder (build replaces only its own output)"
        )


def _files_under(folder: Path, root: Path, out: Path | None) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or (out is not None and out in path.parents):
            continue
        parts = path.relative_to(folder).parts
        if any(p in _SKIPPED or p.startswith(".") for p in parts[:-1]) or path.suffix == ".pyc":
            continue
        found.append(path.relative_to(root).as_posix())
    return found


def _shipped(root: Path, main: Path, config_path: Path, out: Path | None) -> list[str]:
    """Relative paths of everything pywrangler uploads (pyproject.toml is added on its own)."""
    files = [config_path.relative_to(root).as_posix()]
    if main.parent == root:
        files += [
            p.name
            for p in sorted(root.iterdir())
            if p.is_file() and p.suffix == ".py" and not p.name.startswith(".")
        ]
    else:
        files += _files_under(main.parent, root, out)
    vendored = root / "python_modules"
    if vendored.is_dir():
        files += [
            p.relative_to(root).as_posix()
            for p in sorted(vendored.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    return files


def _missing_classes(raw: dict[str, object], main: Path) -> list[Diagnostic]:
    """Each workflow class_name must be a top-level name of main (Cloudflare exports those)."""
    try:
        tree = ast.parse(main.read_text(encoding="utf-8"), filename=str(main))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []  # the portability check reports a main it cannot parse
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.Assign):
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    workflows = raw.get("workflows")
    missing = []
    for entry in workflows if isinstance(workflows, list) else []:
        if not isinstance(entry, dict) or entry.get("script_name") is not None:
            continue
        name = entry.get("class_name")
        if isinstance(name, str) and name not in bound:
            missing.append(
                Diagnostic(
                    "error",
                    f'workflow class_name "{name}" is not defined at the top level of '
                    f"{main.name}; Cloudflare exports only the main module's own names",
                    str(main),
                    1,
                    1,
                    "dynwf.build.class-missing",
                    f"{name} = create_dynamic_workflow_entrypoint(load_runner, "
                    f'class_name="{name}")',
                )
            )
    return missing


def _dynwf_imports(root: Path, files: list[str]) -> list[Diagnostic]:
    """``import dynwf`` in vendored code (the dispatcher's own folder is checked by validate)."""
    found = []
    for relative in files:
        if not relative.endswith(".py"):
            continue
        path = root / relative
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            if any(m == "dynwf" or m.startswith("dynwf.") for m in modules):
                found.append(
                    Diagnostic(
                        "error",
                        f"{relative} imports dynwf, which cannot exist on Cloudflare",
                        str(path),
                        getattr(node, "lineno", 1),
                        getattr(node, "col_offset", 0) + 1,
                        "dynwf.build.dynwf-import",
                        "remove dynwf from what deploys (python_modules/ is vendored from "
                        "[project].dependencies)",
                    )
                )
    return found


def _requirement_names(data: dict[str, object]) -> tuple[set[str], set[str]]:
    """(names in [project].dependencies, names in every dev/optional group)."""

    def names(items: object) -> set[str]:
        out = set()
        for item in items if isinstance(items, list) else []:
            if isinstance(item, str):
                match = re.match(r"[A-Za-z0-9._-]+", item.strip())
                if match:
                    out.add(match.group(0).lower().replace("_", "-"))
        return out

    project = data.get("project")
    project = project if isinstance(project, dict) else {}
    runtime = names(project.get("dependencies"))
    other: set[str] = set()
    for table in (data.get("dependency-groups"), project.get("optional-dependencies")):
        for group in table.values() if isinstance(table, dict) else []:
            other |= names(group)
    return runtime, other


def _pyproject(
    root: Path, raw: dict[str, object], diagnostics: list[Diagnostic]
) -> tuple[dict[str, object] | None, list[Todo]]:
    """The project's pyproject.toml if it is one pywrangler can use (None: build writes one)."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return None, []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        diagnostics.append(
            Diagnostic(
                "error",
                f"pyproject.toml cannot be read: {exc}",
                str(path),
                1,
                1,
                "dynwf.build.pyproject",
                None,
            )
        )
        return {}, []
    runtime, other = _requirement_names(data)
    if "dynwf" in runtime:
        diagnostics.append(
            Diagnostic(
                "error",
                "pyproject.toml lists dynwf in [project].dependencies; `pywrangler sync` "
                "vendors those into python_modules/, and dynwf cannot load on Cloudflare "
                "(native wheels)",
                str(path),
                1,
                1,
                "dynwf.build.pyproject",
                'keep dynwf in a dev group: [dependency-groups] dev = ["dynwf", "workers-py"]',
            )
        )
    todo = []
    if "workers-py" not in runtime | other:
        todo.append(
            Todo(
                "add workers-py (it provides `pywrangler`) to pyproject.toml's dev group",
                "uv add --dev workers-py",
                blocking=True,
            )
        )
    return data, todo


def _imports_library(root: Path, files: list[str]) -> bool:
    for relative in files:
        if not relative.endswith(".py") or relative.startswith("python_modules/"):
            continue
        try:
            tree = ast.parse((root / relative).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import) and any(
                a.name.split(".")[0] == LIBRARY for a in node.names
            ):
                return True
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == LIBRARY:
                return True
    return False


def _library_todo(
    root: Path, main: Path, files: list[str], pyproject: dict[str, object] | None
) -> list[Todo]:
    if not _imports_library(root, files):
        return []
    declared = pyproject is not None and "dynamic-workflows" in _requirement_names(pyproject)[0]
    vendored = (root / "python_modules" / LIBRARY / "__init__.py").is_file() or (
        main.parent / LIBRARY / "__init__.py"
    ).is_file()
    if declared or vendored:
        return []
    return [
        Todo(
            "vendor the dynamic_workflows library (danlapid/dynamic-workflows, "
            "packages/dynamic-workflows-py: a research preview, not on PyPI; dynwf does not "
            "ship a copy of it): add `dynamic-workflows` to [project].dependencies of "
            "pyproject.toml with `[tool.uv.sources] dynamic-workflows = { path = "
            '"<your checkout>/packages/dynamic-workflows-py" }` so `pywrangler sync` puts it '
            "in python_modules/, or copy its src/dynamic_workflows/ folder to "
            "python_modules/dynamic_workflows/",
            None,
            blocking=True,
        )
    ]


def _kv_todo(
    raw: dict[str, object], config_path: Path, has_tenants: bool, out: str | None
) -> list[Todo]:
    if not has_tenants:
        return []
    namespaces = raw.get("kv_namespaces")
    entry = next(
        (
            e
            for e in (namespaces if isinstance(namespaces, list) else [])
            if isinstance(e, dict) and e.get("binding") == KV_BINDING
        ),
        None,
    )
    todo = []
    namespace_id = entry.get("id") if entry is not None else None
    if not isinstance(namespace_id, str) or not _NAMESPACE_ID.match(namespace_id):
        if entry is None:
            declared = (
                f'add [[kv_namespaces]] binding = "{KV_BINDING}" id = "<that id>" to '
                f"{config_path.name}"
            )
        elif namespace_id is None:
            declared = f'add id = "<that id>" to the {KV_BINDING} binding in {config_path.name}'
        else:
            declared = (
                f"put that id in the {KV_BINDING} binding of {config_path.name} (its id "
                f"{json.dumps(namespace_id)} is not a namespace id)"
            )
        todo.append(
            Todo(
                f"create the KV namespace tenant code is read from, then {declared}; "
                "run `dynwf build` again so the tree has it",
                f"npx wrangler kv namespace create {KV_BINDING}",
                blocking=True,
            )
        )
    where = f"cd {out} && " if out is not None else ""
    source = KV_FILE if out is not None else f"{KV_FILE} (run `dynwf build` to write it)"
    todo.append(
        Todo(
            f"upload the tenants' code to the namespace (again after every change under "
            f"tenants/: the loader id follows the code's version): {source}",
            f"{where}npx wrangler kv bulk put {KV_FILE} --binding {KV_BINDING} --remote",
            blocking=False,
        )
    )
    return todo


def _write(
    out: Path,
    root: Path,
    files: list[str],
    pyproject: dict[str, object] | None,
    raw: dict[str, object],
    entries: dict[str, str],
) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text(
        "Written by `dynwf build`; replaced by the next build.\n", encoding="utf-8"
    )
    for relative in files:
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    if pyproject is not None:
        shutil.copy2(root / "pyproject.toml", out / "pyproject.toml")
    else:
        name = raw.get("name") if isinstance(raw.get("name"), str) else root.name
        (out / "pyproject.toml").write_text(_PYPROJECT.format(name=name), encoding="utf-8")
    if entries:
        bulk = [{"key": key, "value": value} for key, value in entries.items()]
        (out / KV_FILE).write_text(json.dumps(bulk, indent=1) + "\n", encoding="utf-8")
