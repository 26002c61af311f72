"""The dev server's ASGI app: the explorer API and UI, every other request to the tenant's fetch.

Requests under ``/cdn-cgi/explorer/api`` get miniflare's guards first: the Host (and
Origin, when sent) must be localhost, 127.0.0.1 or [::1], else a plain-text 403;
``OPTIONS`` is a CORS preflight (204); an ``Origin`` is echoed back as
``Access-Control-Allow-Origin``. A path or method the API does not route answers
Hono's plain-text ``404 Not Found``. The explorer UI's pages (``dynwf.server._ui``)
under ``/cdn-cgi/explorer/`` get the same Host guard; nothing under ``/cdn-cgi/explorer``
reaches the tenant's fetch. Each request is logged as one line.

dynwf's own routes live under ``/cdn-cgi/dynwf`` (same Host guard, never the tenant's):
``POST /cdn-cgi/dynwf/schedules/<workflow>`` with an optional JSON body ``{"cron": str}``
fires that workflow's schedule now (``dynwf instances trigger-schedule``) and answers
201 ``{"id", "workflow", "cron", "scheduledTime", "status"}``; an unknown workflow is a
404 and a workflow without that schedule a 400, each ``{"error": str}``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dynwf.engine import Engine, InstanceState
from dynwf.errors import ValidationError, WorkflowNotFoundError
from dynwf.server._explorer import API_PREFIX, Call, Explorer
from dynwf.server._ui import UI_PREFIX, ui_response
from dynwf.workers import Request, Response

log = logging.getLogger("dynwf.server")

Fetch = Callable[[Request], Awaitable[Response]]
# Fire a workflow's schedule now: (workflow name or binding, cron or None) -> the instance.
Trigger = Callable[[str, str | None], Awaitable[InstanceState]]
DYNWF_PREFIX = "/cdn-cgi/dynwf"

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
_CORS = {
    "access-control-allow-headers": "Content-Type, cf-metadata-only, cf-r2-custom-metadata",
    "access-control-allow-methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "access-control-max-age": "86400",
}
# Hop-by-hop or recomputed: never copied from a fetch Response.
_DROPPED = frozenset({"content-length", "transfer-encoding", "connection"})


def text(status: int, body: str, **headers: str) -> HttpResponse:
    """A plain-text answer with wrangler's spelling of the content type."""
    return HttpResponse(
        body.encode(),
        status_code=status,
        headers={"content-type": "text/plain; charset=UTF-8", **headers},
    )


def _hostname(value: str) -> str:
    """``localhost:8787`` -> ``localhost``; ``[::1]:8787`` -> ``[::1]``."""
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _origin_host(origin: str) -> str:
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return ""
    return _hostname(netloc.rsplit("@", 1)[-1]).lower()


class _Server:
    """One ASGI endpoint for every path and method (a Starlette function route is GET-only)."""

    def __init__(self, engine: Engine, fetch: Fetch | None, trigger: Trigger | None) -> None:
        self.explorer = Explorer(engine)
        self.fetch = fetch
        self.trigger = trigger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = HttpRequest(scope, receive)
        started = time.perf_counter()
        status = 500
        try:
            response = await self.respond(request)
            status = response.status_code
            await response(scope, receive, send)
        finally:
            ms = (time.perf_counter() - started) * 1000
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            log.info("%s %s %d %.1fms", request.method, target, status, ms)

    async def respond(self, request: HttpRequest) -> HttpResponse:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        path = raw.decode("latin-1")
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return await self.api(request, path[len(API_PREFIX) :])
        if path == UI_PREFIX or path.startswith(UI_PREFIX + "/"):
            if _hostname(request.headers.get("host", "")).lower() not in LOCAL_HOSTS:
                return text(403, "Invalid Host header")
            page = ui_response(request.method, path[len(UI_PREFIX) :])
            return page if page is not None else text(404, "404 Not Found")
        if path == DYNWF_PREFIX or path.startswith(DYNWF_PREFIX + "/"):
            if _hostname(request.headers.get("host", "")).lower() not in LOCAL_HOSTS:
                return text(403, "Invalid Host header")
            return await self.own(request, path[len(DYNWF_PREFIX) :])
        return await self.forward(request)

    async def own(self, request: HttpRequest, sub: str) -> HttpResponse:
        """dynwf's own routes (see the module docstring)."""
        segments = [unquote(s) for s in sub.strip("/").split("/")] if sub.strip("/") else []
        if len(segments) != 2 or segments[0] != "schedules" or self.trigger is None:
            return text(404, "404 Not Found")
        if request.method != "POST":
            return text(405, "405 Method Not Allowed: POST to fire the schedule", allow="POST")
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        cron = body.get("cron") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(cron, str | None):
            return _json(400, {"error": 'the body is optional JSON {"cron": "<expression>"}'})
        try:
            st = await self.trigger(segments[1], cron)
        except WorkflowNotFoundError as exc:
            return _json(404, {"error": str(exc)})
        except ValidationError as exc:
            return _json(400, {"error": str(exc)})
        assert st.schedule is not None
        return _json(
            201,
            {
                "id": st.id,
                "workflow": st.workflow,
                "cron": st.schedule["cron"],
                "scheduledTime": st.schedule["scheduledTime"],
                "status": st.status.value,
            },
        )

    async def api(self, request: HttpRequest, sub: str) -> HttpResponse:
        if _hostname(request.headers.get("host", "")).lower() not in LOCAL_HOSTS:
            return text(403, "Invalid Host header")
        origin = request.headers.get("origin")
        if origin is not None and _origin_host(origin) not in LOCAL_HOSTS:
            return text(403, "Invalid Origin header")
        if request.method == "OPTIONS":
            return HttpResponse(
                status_code=204,
                headers={"access-control-allow-origin": origin or "*", **_CORS},
            )
        response = await self.explorer_response(request, sub)
        if origin is not None:
            response.headers["access-control-allow-origin"] = origin
        return response

    async def explorer_response(self, request: HttpRequest, sub: str) -> HttpResponse:
        # Split the raw path so an id holding an encoded "/" stays one segment.
        segments = [unquote(s) for s in sub.strip("/").split("/")] if sub.strip("/") else []
        routed = self.explorer.route(request.method, segments)
        if routed is None:
            return text(404, "404 Not Found")
        handler, args = routed
        call = Call(query=dict(request.query_params), body=await request.body())
        return await self.explorer.run(handler, args, call)

    async def forward(self, request: HttpRequest) -> HttpResponse:
        if self.fetch is None:
            return text(404, "404 Not Found: this dev server has no fetch handler")
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        req = Request(
            str(request.url), method=request.method, headers=headers, body=await request.body()
        )
        try:
            resp = await self.fetch(req)
        except Exception as exc:
            log.exception("fetch failed on %s %s", request.method, request.url.path)
            line = (
                f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            )
            return text(500, f"fetch raised {line}\n")
        if not isinstance(resp, Response):
            log.error("fetch returned %r, not a dynwf.workers.Response", resp)
            return text(500, f"fetch returned {type(resp).__name__}, not a Response\n")
        if not 100 <= resp.status <= 599:
            log.error("fetch returned status %d", resp.status)
            return text(500, f"fetch returned status {resp.status}, not 100-599\n")
        kept = {k: v for k, v in resp.headers.items() if k not in _DROPPED}
        return HttpResponse(resp.body, status_code=resp.status, headers=kept)


def _json(status: int, payload: object) -> HttpResponse:
    return HttpResponse(
        json.dumps(payload).encode(),
        status_code=status,
        headers={"content-type": "application/json"},
    )


def create_app(
    engine: Engine, *, fetch: Fetch | None = None, trigger: Trigger | None = None
) -> Starlette:
    """The dev server app: the explorer API over ``engine``, everything else to ``fetch``.

    ``fetch`` is ``async def fetch(request: dynwf.workers.Request) -> dynwf.workers.Response``;
    without one, other paths answer 404. ``trigger`` fires a schedule for
    ``POST /cdn-cgi/dynwf/schedules/<workflow>`` (404 without one). The app must run
    on the engine's event loop.
    """
    return Starlette(routes=[Route("/{path:path}", _Server(engine, fetch, trigger))])
