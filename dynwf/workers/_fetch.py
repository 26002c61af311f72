"""``from workers import fetch``: outbound HTTP as a Worker makes it.

In an isolate the request goes to the engine over the isolate's protocol socket (its
only channel out), which applies the loader's ``globalOutbound``; an inline tenant's
goes the same way without the socket (``fetch_route``); the dispatcher's goes out
directly. A refused or failed
request raises ``OSError`` with the runtime's message, as Pyodide's ``pyfetch`` turns the
JS error of Cloudflare's ``fetch`` into one.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

from dynwf.workers._http import JsRequest, Request, Response

# A request as data ({"url", "method", "headers", "body": hex}) -> the answer as data:
# {"response": {"status", "headers", "body": hex}} or {"error": {"name", "message"}}.
Channel = Callable[[dict[str, Any]], Awaitable[Any]]
_channel: Channel | None = None
# A tenant run inline, in the engine's process: its loader's route, for its calls only.
fetch_route: ContextVar[Channel | None] = ContextVar("fetch_route", default=None)


def set_channel(channel: Channel | None) -> None:
    """Route this process's ``fetch`` calls through ``channel`` (an isolate: its engine)."""
    global _channel
    _channel = channel


def request_data(
    resource: str | Request | JsRequest,
    *,
    method: str | None = None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: str | bytes | None = None,
) -> dict[str, Any]:
    """The request ``fetch(resource, **options)`` makes, as data; TypeError for a URL
    that is not absolute http(s), as the Fetch API refuses it."""
    if isinstance(resource, JsRequest):
        resource = resource.request
    if isinstance(resource, Request):
        url, base_method, base_headers, base_body = (
            resource.url,
            resource.method,
            dict(resource.headers),
            resource._body,
        )
    else:
        url, base_method, base_headers, base_body = str(resource), "GET", {}, b""
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise TypeError(f"Fetch API cannot load: {url}")
    if headers is not None:
        items = headers.items() if isinstance(headers, Mapping) else headers
        base_headers = {str(k).lower(): str(v) for k, v in items}
    data = base_body if body is None else body.encode() if isinstance(body, str) else body
    return {
        "url": url,
        "method": str(method or base_method).upper(),
        "headers": base_headers,
        "body": bytes(data).hex(),
    }


async def fetch(resource: str | Request | JsRequest, **options: Any) -> Response:
    """Make an HTTP request; ``options`` as Cloudflare's: ``method``, ``headers``, ``body``."""
    unknown = set(options) - {"method", "headers", "body", "redirect", "cf"}
    if unknown:
        raise TypeError(f"fetch() got unexpected options {sorted(unknown)}")
    body = options.get("body")
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body) if isinstance(body, (dict, list)) else str(body)
    data = request_data(
        resource, method=options.get("method"), headers=options.get("headers"), body=body
    )
    channel = fetch_route.get() or _channel
    if channel is not None:
        answer = await channel(data)
    else:
        from dynwf.workers._internet import send

        answer = await send(data)
    return response_from(answer)


def response_from(answer: Any) -> Response:
    """The ``Response`` for an answer as data; ``OSError`` for a refused or failed one."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        raise OSError(str(answer["error"].get("message", "fetch failed")))
    r = answer.get("response") if isinstance(answer, dict) else None
    if not isinstance(r, dict):
        raise OSError(f"fetch failed: a malformed answer {answer!r:.60}")
    return Response(bytes.fromhex(r["body"]), status=r["status"], headers=r["headers"])
