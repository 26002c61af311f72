"""Firing a workflow's cron schedule now, through the running ``dynwf dev``.

Only a dev server fires schedules, so there is no journal fallback: with no server
running, ``trigger_schedule`` says to start one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from dynwf.client._errors import DevServerError
from dynwf.errors import ValidationError, WorkflowNotFoundError
from dynwf.server import find_running

ROUTE = "/cdn-cgi/dynwf/schedules/"


@dataclass(frozen=True, slots=True)
class Fired:
    """The instance a fired schedule created."""

    id: str
    workflow: str
    cron: str
    scheduled_time: int  # epoch ms, UTC
    status: str
    url: str  # the dev server that fired it

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workflow": self.workflow,
            "cron": self.cron,
            "scheduledTime": self.scheduled_time,
            "status": self.status,
        }


async def trigger_schedule(
    state_dir: str | Path,
    workflow: str,
    cron: str | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Fired:
    """Fire ``workflow``'s schedule ``cron`` (default: its first) on the dev server of ``state_dir``."""
    url = await asyncio.to_thread(find_running, Path(state_dir))
    if url is None:
        raise DevServerError(
            f"no running `dynwf dev` for the state in {state_dir}: schedules fire only in the "
            "dev server; start it with `dynwf dev` (or pass --persist-to DIR)"
        )
    target = url + ROUTE + quote(workflow, safe="")
    async with httpx.AsyncClient(transport=transport, timeout=10.0, trust_env=False) as client:
        try:
            answer = await client.post(target, json={"cron": cron} if cron is not None else {})
        except httpx.HTTPError as exc:
            raise DevServerError(f"the dev server at {url} did not answer: {exc}") from None
    try:
        body = answer.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if answer.status_code == 404 and isinstance(error, str):
        raise WorkflowNotFoundError(error)
    if answer.status_code == 400 and isinstance(error, str):
        raise ValidationError(error)
    if answer.status_code != 201 or not isinstance(body, dict):
        raise DevServerError(
            f"the dev server at {url} answered {answer.status_code} to POST {ROUTE}{workflow}: "
            f"{answer.text[:200]}"
        )
    return Fired(
        body["id"], body["workflow"], body["cron"], body["scheduledTime"], body["status"], url
    )
