"""Hot reload: watch the project's Python files and move everything onto the new code.

A change to the dispatcher re-imports ``main`` (the next request and the next pass use
it); a change to a tenant reloads every loaded worker whose code changed. Running
passes end at their next step boundary and replay in the new code, as on Cloudflare.
A syntax or import error keeps the last good version answering requests, reports the
file and line, and parks affected instances (waiting, not errored) until a save fixes it;
so does a tenant whose code cannot be found at all (its folder moved away).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

if TYPE_CHECKING:
    from dynwf.project._project import Project

log = logging.getLogger("dynwf.reload")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What one batch of saved files did."""

    files: tuple[str, ...]
    dispatcher_error: str | None
    workers: dict[str, str | None] = field(default_factory=dict)  # id -> error or None
    unparked: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.dispatcher_error is None and not any(self.workers.values())


def _watched(change: watchfiles.Change, path: str) -> bool:
    p = Path(path)
    if "__pycache__" in p.parts or ".dynwf" in p.parts:
        return False
    if p.suffix == ".py":
        return True
    # A folder moved in or out (a tenant's folder moved away and back) is one event for
    # the folder, none for the files in it. A deleted path can no longer say what it was.
    return p.suffix == "" and (change == watchfiles.Change.deleted or p.is_dir())


async def reload_now(project: Project, files: tuple[str, ...] = ()) -> ReloadResult:
    """Reload the dispatcher and every loaded worker whose code changed."""
    t0 = time.perf_counter()
    dispatcher_error = project.reload_main(files)
    workers: dict[str, str | None] = {}
    for loader in project.loaders.values():
        workers.update(await loader.reload())
    # Every parked instance tries again (code may load now that files came back, even
    # if another tenant's did not); one whose code still fails parks again at once.
    unparked = project.engine.unpark() if dispatcher_error is None else 0
    return ReloadResult(files, dispatcher_error, workers, unparked, time.perf_counter() - t0)


async def watch(
    project: Project,
    on_reload: Callable[[ReloadResult], None] | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Reload on every save until ``stop`` is set (or the task is cancelled)."""
    async for changes in watchfiles.awatch(
        project.root, watch_filter=_watched, debounce=50, step=20, stop_event=stop
    ):
        files = tuple(sorted({path for _c, path in changes}))
        result = await reload_now(project, files)
        if result.dispatcher_error:
            log.error("dispatcher not reloaded: %s", result.dispatcher_error)
        for id, error in result.workers.items():
            if error:
                log.error("worker %r not reloaded (last good version keeps serving): %s", id, error)
            else:
                log.info("worker %r reloaded", id)
        if on_reload is not None:
            on_reload(result)
