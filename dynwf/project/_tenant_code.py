"""Tenant code as the deployed dispatcher reads it: the key/value pairs of the ``TENANT_CODE``
KV namespace, computed from a project's ``tenants/`` folder.

Keys, per tenant folder ``tenants/<tenant>/`` (one with a ``worker.py``):
``<tenant>/<relative path>`` -> the text of each module file (``.py``, ``.json``, ``.txt``),
and ``<tenant>/_manifest.json`` -> ``{"mainModule": "worker.py", "modules": [...],
"version": "<16 hex>"}``, the version being sha256 over the sorted (path, text) pairs.
The dispatcher loads a tenant as loader id ``f"{tenant}:{version}"``, so the id
changes whenever the code does. ``dynwf dev``/``run``/tests serve these pairs as
``env.TENANT_CODE``; ``dynwf build`` writes them for ``wrangler kv bulk put``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MAIN_MODULE = "worker.py"
MANIFEST = "_manifest.json"
MODULE_SUFFIXES = (".py", ".json", ".txt")
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def tenant_ids(project_root: Path | str) -> list[str]:
    """The tenants of a project: folders under ``tenants/`` with a ``worker.py``."""
    folder = Path(project_root) / "tenants"
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith((".", "_")) and (p / MAIN_MODULE).is_file()
    )


def tenant_modules(tenant_folder: Path) -> dict[str, str]:
    """``{relative path: text}`` of every module file of one tenant folder, sorted."""
    found: dict[str, str] = {}
    for path in sorted(tenant_folder.rglob("*")):
        rel = path.relative_to(tenant_folder)
        if (
            not path.is_file()
            or path.suffix not in MODULE_SUFFIXES
            or any(part in _SKIP_DIRS or part.startswith(".") for part in rel.parts)
            or rel.as_posix() == MANIFEST
        ):
            continue
        found[rel.as_posix()] = path.read_text(encoding="utf-8")
    return found


def code_version(modules: dict[str, str]) -> str:
    """The first 16 hex chars of sha256 over the sorted (path, text) pairs."""
    digest = hashlib.sha256()
    for path, text in sorted(modules.items()):
        digest.update(path.encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def tenant_entries(project_root: Path | str, tenant: str) -> dict[str, str]:
    """The key/value pairs of one tenant (empty if it has no ``worker.py``)."""
    folder = Path(project_root) / "tenants" / tenant
    if not (folder / MAIN_MODULE).is_file():
        return {}
    modules = tenant_modules(folder)
    manifest = {
        "mainModule": MAIN_MODULE,
        "modules": list(modules),
        "version": code_version(modules),
    }
    entries = {f"{tenant}/{path}": text for path, text in modules.items()}
    entries[f"{tenant}/{MANIFEST}"] = json.dumps(manifest, sort_keys=True)
    return entries


def tenant_code_entries(project_root: Path | str) -> dict[str, str]:
    """Every key/value pair of the ``TENANT_CODE`` namespace for the project at ``project_root``."""
    entries: dict[str, str] = {}
    for tenant in tenant_ids(project_root):
        entries.update(tenant_entries(project_root, tenant))
    return entries


def tenant_folders(project_root: Path | str) -> list[Path]:
    """Every ``tenants/<tenant>/`` folder of the project (with or without a ``worker.py``)."""
    folder = Path(project_root) / "tenants"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
