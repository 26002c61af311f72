"""A loaded worker's ``globalOutbound``: where its ``fetch`` calls go, decided by the engine.

As the Worker Loader does it (workerd ``worker-loader.c++``, ``server.c++``): absent,
the tenant inherits the platform's internet access; ``null`` (``pyodide.ffi.jsnull``,
or ``None``) blocks it, and every ``fetch`` fails with the runtime's ``Error`` (a tenant
in Python sees ``OSError``); a Fetcher (a service binding: ``ctx.exports.Name(...)`` or
a loaded worker's entrypoint) receives every request whatever its URL. Any other value
is refused when the code loads, with workerd's TypeError text. Each call is logged on
``dynwf.outbound`` (``dynwf dev`` prints it).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from dynwf.compat.pyodide_ffi import jsnull
from dynwf.dispatch._api import current_env, current_main
from dynwf.errors import ValidationError
from dynwf.workers import Request, Response, WorkerEntrypoint
from dynwf.workers._internet import TIMEOUT_S, send

log = logging.getLogger("dynwf.outbound")
# workerd's NullGlobalOutboundChannel, word for word.
NO_INTERNET = (
    "This worker is not permitted to access the internet via global functions like fetch(). "
    "It must use capabilities (such as bindings in 'env') to talk to the outside world."
)
Kind = Literal["internet", "blocked", "binding"]


@dataclass(frozen=True, slots=True)
class Outbound:
    """Where a worker's ``fetch`` goes. Two compare equal when they route the same way
    (so an unchanged ``get_code()`` result does not reload the worker)."""

    kind: Kind
    key: str = ""
    target: Any = field(default=None, compare=False)


INTERNET = Outbound("internet")
# (host, port) of each dev server this process runs: its explorer API reads and changes
# every tenant's instances, so a tenant's fetch never reaches it (nor would it on Cloudflare).
_guarded: set[tuple[str, int]] = set()


@contextlib.contextmanager
def guarded(host: str, port: int) -> Iterator[None]:
    """While open, outbound requests to ``host:port`` (or loopback on that port) fail."""
    _guarded.add((host, port))
    try:
        yield
    finally:
        _guarded.discard((host, port))


def _to_guarded(url: str) -> bool:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    for g_host, g_port in _guarded:
        if port != g_port:
            continue
        if host in (g_host.lower(), "localhost") or host.endswith(".localhost"):
            return True
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(host)
            if ip.is_loopback or ip.is_unspecified or g_host in ("0.0.0.0", "::"):
                return True
    return False


def outbound_of(id: str, code: dict[str, Any]) -> Outbound:
    """The ``globalOutbound`` of a ``get_code()`` result (already ``to_py``'d)."""
    if "globalOutbound" not in code:
        return INTERNET
    value = code["globalOutbound"]
    if isinstance(value, Outbound):
        return value  # checked already (a stored code dict, as hot reload reuses it)
    if value is None or value is jsnull:
        return Outbound("blocked")
    from dynwf.dispatch._loader import EntrypointStub

    if isinstance(value, EntrypointStub):
        return Outbound("binding", f"worker {value.worker.id}:{value.name}", value)
    if isinstance(value, WorkerEntrypoint):
        props = getattr(getattr(value, "ctx", None), "props", None)
        fields = props.to_py() if props is not None and hasattr(props, "to_py") else {}
        key = f"{type(value).__qualname__}:{json.dumps(fields, sort_keys=True, default=str)}"
        return Outbound("binding", key, value)
    raise ValidationError(
        f"get_code() for worker {id!r}: Incorrect type for the 'globalOutbound' field on "
        "'WorkerCode': the provided value is not of type 'Fetcher'. Use null (jsnull) to "
        "block the internet, a service binding such as ctx.exports.Name({'props': ...}) to "
        "route it, or leave it out to inherit the platform's"
    )


class Gateway:
    """Sends a loader's outbound requests (one HTTP client shared by its workers)."""

    def __init__(self, platform: Callable[[], tuple[Any, Any] | None]) -> None:
        self._platform = platform
        self._client: httpx.AsyncClient | None = None

    async def send(self, worker: str, outbound: Outbound, data: dict[str, Any]) -> Any:
        """The answer (as data) to worker ``worker``'s request ``data``."""
        if outbound.kind == "blocked":
            answer: dict[str, Any] = {"error": {"name": "Error", "message": NO_INTERNET}}
        elif outbound.kind == "binding":
            answer = await self._to_binding(outbound.target, data)
        elif _to_guarded(data["url"]):
            answer = {
                "error": {
                    "name": "Error",
                    "message": f"dynwf: {data['url']} is the dev server itself, whose explorer "
                    "API reads and changes every tenant's instances: a Worker cannot reach it",
                }
            }
        else:
            if self._client is None:
                self._client = httpx.AsyncClient(follow_redirects=True, timeout=TIMEOUT_S)
            answer = await send(data, self._client)
        status = answer["response"]["status"] if "response" in answer else "refused"
        how = outbound.kind if outbound.kind != "binding" else f"to {outbound.key}"
        log.info("%s fetch %s %s -> %s (%s)", worker, data["method"], data["url"], status, how)
        return answer

    async def _to_binding(self, target: Any, data: dict[str, Any]) -> dict[str, Any]:
        request = Request(
            data["url"],
            method=data["method"],
            headers=data["headers"],
            body=bytes.fromhex(data["body"]),
        )
        try:
            with self._as_platform():
                arg = request if isinstance(target, WorkerEntrypoint) else request.js_object
                response = await target.fetch(arg)
        except Exception as exc:  # the gateway's own failure reaches the tenant's fetch
            return {"error": {"name": type(exc).__name__, "message": str(exc)}}
        if not isinstance(response, Response):
            return {
                "error": {
                    "name": "TypeError",
                    "message": "the globalOutbound's fetch() did not return a Response",
                }
            }
        return {
            "response": {
                "status": response.status,
                "headers": dict(response.headers),
                "body": response.body.hex(),
            }
        }

    @contextlib.contextmanager
    def _as_platform(self) -> Iterator[None]:
        """Run the dispatcher's gateway class as the platform worker (its env, exports)."""
        platform = self._platform()
        if platform is None:
            yield
            return
        env_token = current_env.set(platform[0])
        main_token = current_main.set(platform[1])
        try:
            yield
        finally:
            current_main.reset(main_token)
            current_env.reset(env_token)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
