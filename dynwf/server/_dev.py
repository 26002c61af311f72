"""``dynwf dev`` as a function: a project's engine, its HTTP server and hot reload together."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from dynwf.project import Project, ReloadResult, watch
from dynwf.server._app import create_app
from dynwf.server._serve import ServerError, serve


async def serve_project(
    project: Project,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    reload: bool = True,
    on_ready: Callable[[str], object] | None = None,
    on_reload: Callable[[ReloadResult], None] | None = None,
) -> None:
    """Start the project, serve it until SIGINT/SIGTERM, then stop with nothing lost.

    The port is checked before the engine starts, so a port in use changes nothing.
    Unfinished instances in the journal resume as soon as the engine starts, and the
    workflows' cron schedules fire while it serves (``project.scheduler``). If a
    journal commit fails, the engine stops (fail-stop), the server shuts down and the
    engine's ``JournalCommitError`` is raised once everything is closed.
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ServerError(
                f"port {port} on {host} is in use: stop the other server or pass --port N"
            ) from None
    await project.start()
    stop = asyncio.Event()
    failed = asyncio.Event()

    def on_fatal(kind: str, payload: Any) -> None:
        if kind == "fatal":
            failed.set()

    project.engine.listeners.append(on_fatal)
    watcher: asyncio.Task[Any] | None = None
    scheduler = asyncio.create_task(project.scheduler.run())
    try:
        if reload:
            watcher = asyncio.create_task(watch(project, on_reload, stop=stop))
        app = create_app(project.engine, fetch=project.fetch, trigger=project.scheduler.fire)
        await serve(
            app,
            host=host,
            port=port,
            state_dir=project.state_dir,
            on_ready=on_ready,
            stop=failed,
        )
    finally:
        stop.set()
        scheduler.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await scheduler
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
        await project.stop()
    if project.engine.fatal is not None:
        raise project.engine.fatal
