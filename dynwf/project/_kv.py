"""``env.TENANT_CODE``: a Workers KV namespace (read side) served from the ``tenants/`` folder.

Each read computes the value from the files as they are now, so a save is seen by the
next read; what a deployed dispatcher reads from KV is the same (``_tenant_code``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dynwf.compat._jsobject import JsObject
from dynwf.errors import ValidationError
from dynwf.project._tenant_code import MANIFEST, tenant_entries, tenant_ids

TENANT_CODE_BINDING = "TENANT_CODE"


class TenantCodeNamespace:
    """``await env.TENANT_CODE.get(key)`` -> text or None; ``get(key, "json")`` parses it."""

    def __init__(self, project_root: Path) -> None:
        self._root = project_root

    def __repr__(self) -> str:
        return f"<KV namespace {TENANT_CODE_BINDING} served from {self._root / 'tenants'}>"

    async def get(self, key: str, options: Any = None) -> Any:
        if not isinstance(key, str):
            raise TypeError(f"KV get() takes a key string, got {type(key).__name__}")
        kind = _kind(options)
        tenant = key.split("/", 1)[0]
        value = tenant_entries(self._root, tenant).get(key) if "/" in key else None
        if value is None or kind == "text":
            return value
        if kind == "json":
            return json.loads(value)
        raise ValidationError(
            f"KV get({key!r}): dynwf serves TENANT_CODE as text or json, not {kind!r}"
        )

    async def list(self, options: Any = None) -> JsObject:
        """``{"keys": [{"name"}], "list_complete": true}``, optionally by ``prefix``."""
        opts = options.to_py() if isinstance(options, JsObject) else dict(options or {})
        prefix = str(opts.get("prefix") or "")
        names = sorted(
            k
            for tenant in tenant_ids(self._root)
            for k in tenant_entries(self._root, tenant)
            if k.startswith(prefix)
        )
        return JsObject({"keys": [JsObject({"name": n}) for n in names], "list_complete": True})


def _kind(options: Any) -> str:
    if options is None:
        return "text"
    if isinstance(options, str):
        return options
    opts = options.to_py() if isinstance(options, JsObject) else dict(options)
    return str(opts.get("type") or "text")


def newer_version(project_root: Path, loader_id: str) -> tuple[str, dict[str, Any]] | None:
    """For a loader id ``"<tenant>:<version>"`` whose tenant's code changed since: the new
    id and the code to load for it (``mainModule``, ``modules`` as the dispatcher makes
    them). ``None`` for any other id, or if the code is unchanged."""
    tenant, sep, version = loader_id.rpartition(":")
    if not sep or len(version) != 16 or tenant not in tenant_ids(project_root):
        return None
    entries = tenant_entries(project_root, tenant)
    manifest = json.loads(entries[f"{tenant}/{MANIFEST}"])
    if manifest["version"] == version:
        return None
    modules: dict[str, Any] = {}
    for name in manifest["modules"]:
        text = entries[f"{tenant}/{name}"]
        modules[name] = text if name.endswith(".py") else {"text": text}
    return f"{tenant}:{manifest['version']}", {
        "mainModule": manifest["mainModule"],
        "modules": modules,
    }
