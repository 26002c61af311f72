"""The ``__dispatcherMetadata`` envelope and the tenant scope derived from it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dynwf.errors import MissingDispatcherMetadataError

ENVELOPE_KEY = "__dispatcherMetadata"


def wrap(metadata: Any, params: Any) -> dict[str, Any]:
    return {ENVELOPE_KEY: metadata, "params": params}


def unwrap(payload: Any) -> tuple[Any, Any]:
    """``(metadata, params)`` from a dispatched instance's payload."""
    if not isinstance(payload, Mapping) or ENVELOPE_KEY not in payload:
        raise MissingDispatcherMetadataError(
            f"this instance's params have no {ENVELOPE_KEY!r} envelope, so it cannot be routed "
            "to a tenant: create dynamic workflow instances through the binding returned by "
            "wrap_workflow_binding(metadata), not the raw workflow binding"
        )
    return payload[ENVELOPE_KEY], payload.get("params")


def scope_of(metadata: Any) -> str:
    """The tenant scope: canonical JSON of the metadata, so equal metadata = same tenant."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
