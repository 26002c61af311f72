"""Copy a template tree into a project, filling in names, never overwriting a file."""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath
from typing import Literal

from dynwf.config import CONFIG_FILE_NAMES
from dynwf.errors import DynwfError, ValidationError

# The rule the scaffolded dispatcher (src/entry.py, TENANT_ID) applies to tenant ids:
# a URL path segment and a Worker Loader cache key.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_TENANT_ID = re.compile(TENANT_ID_PATTERN)

# Left behind by running a template's tests or dev server in place; never copied.
_NOT_TEMPLATE = {"__pycache__", ".dynwf", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


class ScaffoldError(DynwfError):
    """A project or tenant that cannot be created where asked."""


class NotAProjectError(ScaffoldError):
    """The directory has no wrangler config, so there is no project to add a tenant to."""


class InvalidTenantIdError(ScaffoldError, ValidationError):
    """A tenant id the dispatcher would refuse."""


@dataclass(frozen=True, slots=True)
class ScaffoldResult:
    """What a scaffold call did, as POSIX paths relative to ``root``."""

    root: Path
    created: tuple[str, ...]
    skipped: tuple[str, ...]  # existed already; left exactly as they were


def init_project(directory: str | Path) -> ScaffoldResult:
    """Make a platform project in ``directory`` (created if missing): a wrangler.toml, the
    dispatcher, two example tenants, their tests. Files that exist are skipped."""
    root = _directory(Path(directory), create=True)
    tokens = {"__project__": _worker_name(root.resolve().name)}
    has_config = any((root / name).is_file() for name in CONFIG_FILE_NAMES)
    # A wrangler.jsonc / wrangler.json already configures this directory: adding a
    # wrangler.toml beside it would make two configs, so it counts as existing.
    keep = {"wrangler.toml"} if has_config else set()
    return _copy(_template("project"), root, tokens, keep)


def add_tenant(directory: str | Path, tenant_id: str) -> ScaffoldResult:
    """Add ``tenants/<tenant_id>/`` and a test for it to the project in ``directory``."""
    check_tenant_id(tenant_id)
    root = Path(directory)
    if not any((root / name).is_file() for name in CONFIG_FILE_NAMES):
        raise NotAProjectError(
            f"{root} has no {' / '.join(CONFIG_FILE_NAMES)}: run `dynwf init {root}` to make a "
            "project there, or pass the project's directory"
        )
    tokens = {"__tenant__": tenant_id, "__tenant_module__": tenant_id.replace("-", "_")}
    return _copy(_template("tenant"), root, tokens, set())


def check_tenant_id(tenant_id: str) -> None:
    """Raise ``InvalidTenantIdError`` unless the dispatcher accepts ``tenant_id``."""
    if not _TENANT_ID.match(tenant_id):
        raise InvalidTenantIdError(
            f"{tenant_id!r} is not a valid tenant id: use 1-63 lowercase letters, digits or "
            "hyphens, starting with a letter or digit (e.g. 'acme' or 'acme-eu')"
        )


def _directory(path: Path, *, create: bool) -> Path:
    if path.exists() and not path.is_dir():
        raise ScaffoldError(f"{path} exists and is not a directory: pick another path")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ScaffoldError(f"cannot create {path}: {exc.strerror or exc}") from exc
    return path


def _worker_name(folder: str) -> str:
    """The folder name as a Worker name: lowercase letters, digits and hyphens."""
    name = re.sub(r"[^a-z0-9]+", "-", folder.lower()).strip("-")[:63].rstrip("-")
    return name or "dynwf-platform"


def _template(kind: Literal["project", "tenant"]) -> Traversable:
    try:
        root = importlib.resources.files("dynwf._templates")
    except ModuleNotFoundError as exc:
        raise ScaffoldError(
            "dynwf's templates are missing (no module dynwf._templates): reinstall dynwf, "
            "e.g. `pip install --force-reinstall dynwf`, or `pip install -e .` in a checkout"
        ) from exc
    return root / kind


def _files(folder: Traversable, prefix: PurePosixPath) -> list[tuple[PurePosixPath, Traversable]]:
    found: list[tuple[PurePosixPath, Traversable]] = []
    for entry in folder.iterdir():
        if entry.name in _NOT_TEMPLATE or entry.name.endswith(".pyc"):
            continue
        if entry.is_dir():
            found.extend(_files(entry, prefix / entry.name))
        else:
            found.append((prefix / entry.name, entry))
    return found


def _fill(text: str, tokens: dict[str, str]) -> str:
    # Longest token first, so no token is replaced inside a longer one.
    for token in sorted(tokens, key=len, reverse=True):
        text = text.replace(token, tokens[token])
    return text


def _render(data: bytes, tokens: dict[str, str]) -> bytes:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data  # not text: copied as it is
    return _fill(text, tokens).encode("utf-8")


def _copy(
    template: Traversable, root: Path, tokens: dict[str, str], keep: set[str]
) -> ScaffoldResult:
    created: list[str] = []
    skipped: list[str] = []
    for source_path, source in sorted(_files(template, PurePosixPath()), key=lambda f: f[0]):
        relative = _fill(str(source_path), tokens)
        target = root / relative
        if relative in keep or target.exists() or target.is_symlink():
            skipped.append(relative)
            continue
        data = _render(source.read_bytes(), tokens)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # "x": fail rather than overwrite a file that appeared since the check.
            with target.open("xb") as out:
                out.write(data)
        except FileExistsError:
            skipped.append(relative)
            continue
        except OSError as exc:
            raise ScaffoldError(f"cannot write {target}: {exc.strerror or exc}") from exc
        created.append(relative)
    return ScaffoldResult(root, tuple(created), tuple(skipped))
