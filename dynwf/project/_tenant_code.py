"""Tenant code as the deployed dispatcher reads it: the key/value pairs of ``TENANT_CODE``.

One place computes them (see /work/notes/CONTRACT-tenant-code.md): ``dynwf dev`` serves
them from the ``tenants/`` folder, ``dynwf build`` writes them for ``wrangler kv bulk put``.

For each folder ``tenants/<tenant>/``:

- ``<tenant>/<relative path>`` -> the text of every module file under it (``.py``, and
  ``.json`` / ``.txt`` data files), relative paths with ``/``;
- ``<tenant>/_manifest.json`` -> ``{"mainModule": "worker.py", "modules": [...],
  "version": "<16 hex>"}``, the version being sha256 over the sorted (path, text) pairs,
  so the loader id ``f"{tenant}:{version}"`` changes whenever the code does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

TENANTS_FOLDER = "tenants"
MAIN_MODULE = "worker.py"
MANIFEST = "_manifest.json"
MODULE_SUFFIXES = (".py", ".json", ".txt")


def tenant_folders(project_root: str | Path) -> list[Path]:
    """Each ``tenants/<tenant>/`` folder of the project, sorted by name."""
    tenants = Path(project_root) / TENANTS_FOLDER
    if not tenants.is_dir():
        return []
    return sorted(p for p in tenants.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def tenant_modules(folder: Path) -> dict[str, str]:
    """``{relative path: text}`` of one tenant's module files, sorted by path."""
    modules: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or path.suffix not in MODULE_SUFFIXES:
            continue
        if any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            continue
        modules[relative.as_posix()] = path.read_text(encoding="utf-8")
    return modules


def code_version(modules: dict[str, str]) -> str:
    """First 16 hex characters of sha256 over the sorted (path, text) pairs."""
    digest = hashlib.sha256()
    for path, text in sorted(modules.items()):
        digest.update(path.encode("utf-8") + b"\0" + text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def tenant_code_entries(project_root: str | Path) -> dict[str, str]:
    """Every ``TENANT_CODE`` key and its value, for all tenants of the project."""
    entries: dict[str, str] = {}
    for folder in tenant_folders(project_root):
        modules = tenant_modules(folder)
        for relative, text in modules.items():
            entries[f"{folder.name}/{relative}"] = text
        manifest = {
            "mainModule": MAIN_MODULE,
            "modules": sorted(modules),
            "version": code_version(modules),
        }
        entries[f"{folder.name}/{MANIFEST}"] = json.dumps(manifest)
    return entries
