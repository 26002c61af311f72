"""A platform project loaded for one test: env, tenant bindings, HTTP, the engine."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Any, Literal

from dynwf.config import CONFIG_FILE_NAMES
from dynwf.dispatch import TenantWorkflowBinding
from dynwf.dispatch._api import tenant_binding
from dynwf.engine import Engine, Instance
from dynwf.errors import DynwfError
from dynwf.project import Project
from dynwf.workers import Request, Response


def find_project(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding a wrangler config."""
    for folder in (start, *start.parents):
        if any((folder / name).is_file() for name in CONFIG_FILE_NAMES):
            return folder
    raise DynwfError(
        f"no wrangler.toml / wrangler.jsonc / wrangler.json at or above {start}: "
        "put the tests inside the project, or make a Project yourself"
    )


class ProjectHarness:
    def __init__(
        self,
        root: Path,
        state_dir: Path,
        *,
        isolation: Literal["process", "inline"] = "process",
        **engine_kwargs: Any,
    ) -> None:
        self.project = Project.load(
            root, persist_to=state_dir, isolation=isolation, **engine_kwargs
        )
        self._tasks: set[Any] = set()

    async def start(self) -> None:
        await self.project.start()

    async def stop(self) -> None:
        await self.project.stop()

    @property
    def env(self) -> Any:
        return self.project.env

    @property
    def engine(self) -> Engine:
        return self.project.engine

    def tenant(
        self, tenant_id: str, *, binding: str = "WORKFLOWS", metadata: Any = None
    ) -> TenantWorkflowBinding:
        """The binding tenant ``tenant_id`` gets (metadata defaults to ``{"tenantId": id}``)."""
        meta = metadata if metadata is not None else {"tenantId": tenant_id}
        wrapped = tenant_binding(self.env, meta, binding)

        def evict(_st: Any) -> None:
            import asyncio

            for loader in self.project.loaders.values():
                task = asyncio.get_running_loop().create_task(loader.evict(tenant_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        wrapped._dynwf_evict = evict  # type: ignore[attr-defined]
        return wrapped

    async def trigger_schedule(self, workflow: str, cron: str | None = None) -> Instance:
        """Fire ``workflow``'s cron schedule ``cron`` (default: its first) now, as ``dynwf
        dev`` would at its minute: ``event["schedule"]`` is ``{"cron", "scheduledTime"}``."""
        st = await self.project.scheduler.fire(workflow, cron)
        return Instance(self.engine, st)

    async def fetch(
        self,
        path: str,
        *,
        method: str = "GET",
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send an HTTP request to the dispatcher, as ``dynwf dev`` would."""
        body = jsonlib.dumps(json) if json is not None else None
        hdrs = (
            {"content-type": "application/json", **(headers or {})} if json is not None else headers
        )
        url = "http://localhost" + (path if path.startswith("/") else "/" + path)
        return await self.project.fetch(Request(url, method=method, headers=hdrs, body=body))
