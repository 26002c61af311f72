"""Requests that go out to the network (the engine's process: it has the network)."""

from __future__ import annotations

from typing import Any

import httpx

# Cloudflare waits up to 100 s for an origin's response headers.
TIMEOUT_S = 100.0
# httpx hands over the body decoded: these headers would describe the bytes on the wire.
_DECODED = {"content-encoding", "content-length", "transfer-encoding"}


async def send(data: dict[str, Any], client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """Make the request ``data`` describes; the answer as data (see ``_fetch.Channel``)."""
    own = client is None
    c = client or httpx.AsyncClient(follow_redirects=True, timeout=TIMEOUT_S)
    try:
        r = await c.request(
            data["method"],
            data["url"],
            headers=data["headers"],
            content=bytes.fromhex(data["body"]) or None,
        )
    except httpx.HTTPError as exc:
        return {"error": {"name": "Error", "message": f"fetch to {data['url']} failed: {exc}"}}
    finally:
        if own:
            await c.aclose()
    return {
        "response": {
            "status": r.status_code,
            "headers": {k.lower(): v for k, v in r.headers.items() if k.lower() not in _DECODED},
            "body": r.content.hex(),
        }
    }
