"""The ``__dispatcherMetadata`` envelope and the tenant scope derived from it."""

from __future__ import annotations

import json
from typing import Any

ENVELOPE_KEY = "__dispatcherMetadata"


def wrap(metadata: Any, params: Any) -> dict[str, Any]:
    return {ENVELOPE_KEY: metadata, "params": params}


def scope_of(metadata: Any) -> str:
    """The tenant scope: canonical JSON of the metadata, so equal metadata = same tenant."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
