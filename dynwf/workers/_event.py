"""The ``event`` a tenant's ``run(event, step)`` gets, as Cloudflare's tenant runtime gives it.

On Cloudflare it is a plain dict with ``payload``, ``timestamp`` (a naive ``datetime``)
and ``instanceId``. Attribute access (``event.payload``) fails there, so it fails here,
with the portable form in the message.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


class TenantEvent(dict[str, Any]):
    """A dict; ``event.payload`` raises the error that names ``event["payload"]``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"event.{name} does not work on Cloudflare, where a tenant's event is a plain "
            f'dict: use event["{name}"] (keys: {", ".join(sorted(self))})'
        )


def naive_utc(ts: Any) -> Any:
    """A timestamp as Cloudflare's SDK converts a JS Date: a naive datetime (UTC)."""
    if isinstance(ts, datetime) and ts.tzinfo is not None:
        return ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def tenant_event(payload: Any, timestamp: Any, instance_id: Any) -> TenantEvent:
    return TenantEvent(payload=payload, timestamp=naive_utc(timestamp), instanceId=instance_id)
