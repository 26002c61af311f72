"""Running the app on a port with uvicorn, and the ``dev.json`` file that says where it runs.

``serve`` binds the port itself first, so a port in use is one clear ``ServerError``
instead of a uvicorn log line, then hands the socket to uvicorn. Once listening it
writes ``<state_dir>/dev.json`` (``{"pid", "url"}``) and removes it on the way out.

SIGINT and SIGTERM (main thread only): uvicorn's graceful shutdown (stop accepting,
close idle keep-alive connections, wait up to 5 s for requests in flight), then
``serve`` returns normally; a second SIGINT forces the exit. Unlike a bare
``uvicorn.Server.serve``, the signal is not raised again afterwards, so the caller
can stop its engine and exit cleanly. The previous signal handlers are restored.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from dynwf.dispatch._outbound import guarded
from dynwf.errors import DynwfError
from dynwf.server._explorer import API_PREFIX

DEV_FILE = "dev.json"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ServerError(DynwfError):
    """The dev server cannot listen: the port is in use, or the address is not usable."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: rebinding over TIME_WAIT is fine, over a live listener is not.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServerError(
                f"port {port} on {host} is in use: stop the other server or pass --port N"
            ) from None
        reason = exc.strerror or str(exc)
        raise ServerError(
            f"cannot listen on {host} port {port}: {reason} (pass --host and --port to choose another)"
        ) from None
    return sock


def url_for(host: str, port: int) -> str:
    """The URL clients use; a wildcard address is reached through loopback."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _write_dev_file(path: Path, data: dict[str, Any]) -> None:
    """Atomically: a reader sees the old file or the whole new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, path)


def _read_dev_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_if_ours(path: Path, url: str) -> None:
    # Another server may have taken the file over since (same state dir, other port).
    data = _read_dev_file(path)
    if data is not None and data.get("pid") == os.getpid() and data.get("url") == url:
        path.unlink(missing_ok=True)


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, calling back once listening and returning (not re-raising) on signals."""

    def __init__(self, config: uvicorn.Config, started: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._started_cb = started
        self.failure: BaseException | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started or self.should_exit:
            return
        try:
            await self._started_cb()
        except Exception as exc:  # shut down cleanly, then let serve() raise it
            self.failure = exc
            self.should_exit = True

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    state_dir: Path | None = None,
    on_ready: Callable[[str], object] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM or ``stop`` is set; see the module docstring.

    ``port=0`` picks a free port. ``on_ready(url)`` (plain or async) runs once the
    server listens and ``dev.json`` is written. Raises ``ServerError`` when the port
    cannot be bound.
    """
    sock = _bind(host, port)
    url = url_for(host, sock.getsockname()[1])
    dev_file = Path(state_dir) / DEV_FILE if state_dir is not None else None

    async def started() -> None:
        if dev_file is not None:
            _write_dev_file(dev_file, {"pid": os.getpid(), "url": url})
        if on_ready is not None:
            result = on_ready(url)
            if inspect.isawaitable(result):
                await result

    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # leave logging to the caller (the CLI configures it)
        lifespan="off",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    server = _Uvicorn(config, started)

    async def stop_on_request() -> None:
        assert stop is not None
        await stop.wait()
        server.should_exit = True

    stopper = asyncio.create_task(stop_on_request()) if stop is not None else None
    try:
        with guarded(host, sock.getsockname()[1]):  # tenants' fetch never reaches this server
            await server.serve(sockets=[sock])
    finally:
        if stopper is not None:
            stopper.cancel()
        if dev_file is not None:
            _remove_if_ours(dev_file, url)
        sock.close()
    if server.failure is not None:
        raise server.failure


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


def find_running(state_dir: Path) -> str | None:
    """The URL of the dev server recorded in ``state_dir``, if it is alive and answers.

    Alive means: the pid exists and ``GET {url}/cdn-cgi/explorer/api/workflows`` answers
    200 within 1 s. A file that is unreadable, names a dead pid, or whose URL refuses
    the connection or answers something else is stale and is removed. A server that
    accepts but does not answer in time gives None and keeps its file (it may be busy).
    """
    path = Path(state_dir) / DEV_FILE
    if not path.exists():
        return None
    data = _read_dev_file(path)
    pid, url = (data or {}).get("pid"), (data or {}).get("url")
    if (
        not isinstance(pid, int)
        or isinstance(pid, bool)
        or pid <= 0
        or not isinstance(url, str)
        or not _alive(pid)
    ):
        path.unlink(missing_ok=True)
        return None
    try:
        answer = httpx.get(f"{url}{API_PREFIX}/workflows", timeout=1.0, trust_env=False)
    except httpx.TimeoutException:
        return None
    except httpx.HTTPError:
        path.unlink(missing_ok=True)
        return None
    if answer.status_code != 200:
        path.unlink(missing_ok=True)
        return None
    return url
