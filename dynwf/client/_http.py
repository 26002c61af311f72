"""Reading and steering instances through a running ``dynwf dev``'s explorer API.

The API is wrangler's local explorer API (``<url>/cdn-cgi/explorer/api``) with
dynwf's extensions: ``?tenant=`` scopes an instance call to one tenant, and an
instance detail carries ``tenant``, per-step ``executions`` and ``replays``, and
``warnings``. The instance list is per workflow and has no id filter, so an id
given without ``--workflow`` and ``--tenant`` is found by paging through the
lists; a list item's ``tenant`` (when the server sends it) says whose it is.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal
from urllib.parse import quote

import httpx

from dynwf.client._errors import DevServerError
from dynwf.client._model import (
    Action,
    InstanceDetail,
    InstanceSummary,
    Place,
    Steered,
    Steering,
    check_listing,
    envelope,
    pick,
    place_text,
    tenant_scopes,
)
from dynwf.dispatch import scope_of
from dynwf.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    ValidationError,
    WorkflowNotFoundError,
)

API = "/cdn-cgi/explorer/api"
_PER_PAGE = 100  # the explorer API's maximum
_MAX_PAGES = 1000
_DETAILS_AT_ONCE = 8


class HttpStateClient(Steering):
    """A ``StateClient`` over a running ``dynwf dev`` (or any server of the same API)."""

    kind: Literal["dev", "journal"] = "dev"

    def __init__(
        self,
        url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.location = self.url
        self._transport = transport
        self._timeout = timeout
        self._where = f"the dev server at {self.url}"

    def __repr__(self) -> str:
        return f"<HttpStateClient {self.url}>"

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url + API,
            transport=self._transport,
            timeout=self._timeout,
            trust_env=False,  # a proxy from the environment must not stand between us and localhost
        )

    # -- reading -------------------------------------------------------------------
    async def list_instances(
        self,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[InstanceSummary]:
        check_listing(status, limit)
        async with self._client() as c:
            known = await self._workflows(c, workflow)
            names = [workflow] if workflow is not None else known
            rows: list[tuple[str, dict[str, Any]]] = []
            for name in names:
                for scope in [None] if tenant is None else tenant_scopes(tenant):
                    items = await self._list(c, name, tenant=scope, status=status, want=limit)
                    rows += [(name, {"tenant": scope, **item}) for item in items]
            # Newest first across workflows; items the server could not date go last.
            rows.sort(key=lambda r: str(r[1].get("created_on") or ""), reverse=True)
            rows = rows[:limit]
            gate = asyncio.Semaphore(_DETAILS_AT_ONCE)

            async def summary(name: str, item: dict[str, Any]) -> InstanceSummary:
                id = str(item["id"])
                owner = item.get("tenant", tenant)
                steps = item.get("step_count")
                if steps is None or owner is None:
                    async with gate:
                        detail = await self._detail(c, name, id, owner)
                    steps = detail.get("step_count", len(detail.get("steps") or []))
                    owner = detail.get("tenant", owner)
                return InstanceSummary(
                    id,
                    str(owner or ""),
                    name,
                    str(item.get("status", "unknown")),
                    item.get("created_on"),
                    int(steps),
                )

            return list(await asyncio.gather(*(summary(n, i) for n, i in rows)))

    async def describe(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> InstanceDetail:
        async with self._client() as c:
            workflow_, tenant_ = await self._resolve(c, id, workflow, tenant)
            body = await self._detail(c, workflow_, id, tenant_)
        body = {k: v for k, v in body.items() if k not in ("id", "workflow")}
        tenant_ = str(body.pop("tenant", tenant_))
        return {"id": id, "workflow": workflow_, "tenant": tenant_, **body}

    # -- steering ------------------------------------------------------------------
    async def send_event(
        self,
        id: str,
        type: str,
        payload: Any,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
    ) -> Steered:
        async with self._client() as c:
            place = await self._resolve(c, id, workflow, tenant)
            before = await self._detail(c, place[0], id, place[1])
            await self._call(
                c,
                "POST",
                _path(place[0], id, "events", type),
                tenant=place[1],
                content=json.dumps(payload),
                instance=(id, place),
            )
            return await self._after(c, id, place, "send_event", before.get("status"))

    async def _steer(
        self,
        id: str,
        workflow: str | None,
        tenant: str | None,
        action: Action,
        start: dict[str, Any] | None = None,
    ) -> Steered:
        body: dict[str, Any] = {"action": action}
        if start is not None:
            body["from"] = start
        async with self._client() as c:
            place = await self._resolve(c, id, workflow, tenant)
            before = await self._detail(c, place[0], id, place[1])
            await self._call(
                c,
                "PATCH",
                _path(place[0], id, "status"),
                tenant=place[1],
                content=json.dumps(body),
                instance=(id, place),
            )
            return await self._after(c, id, place, action, before.get("status"))

    async def delete(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered:
        async with self._client() as c:
            place = await self._resolve(c, id, workflow, tenant)
            before = await self._detail(c, place[0], id, place[1])
            await self._call(
                c, "DELETE", _path(place[0], id), tenant=place[1], instance=(id, place)
            )
        previous = before.get("status")
        return Steered(
            id, place[0], place[1], "delete", "deleted", None if previous is None else str(previous)
        )

    async def create(
        self,
        workflow: str,
        *,
        metadata: Any,
        params: Any = None,
        id: str | None = None,
        retention: dict[str, Any] | None = None,
    ) -> Steered:
        scope = scope_of(metadata)
        body: dict[str, Any] = {"params": envelope(metadata, params)}
        if id is not None:
            body["id"] = id
        if retention is not None:
            body["retention"] = retention
        async with self._client() as c:
            await self._workflows(c, workflow)
            made = await self._call(
                c, "POST", _path(workflow), tenant=scope, content=json.dumps(body)
            )
            new_id = str(made["result"]["id"])
            return await self._after(c, new_id, (workflow, scope), "create", None)

    async def _after(
        self, c: httpx.AsyncClient, id: str, place: Place, action: Any, previous: Any
    ) -> Steered:
        detail = await self._detail(c, place[0], id, place[1])
        status = str(detail.get("status", "unknown"))
        return Steered(
            id, place[0], place[1], action, status, None if previous is None else str(previous)
        )

    # -- the API -------------------------------------------------------------------
    async def _workflows(self, c: httpx.AsyncClient, wanted: str | None) -> list[str]:
        """Every workflow the server runs; a WorkflowNotFoundError if ``wanted`` is not one."""
        body = await self._call(c, "GET", "/workflows")
        names = [str(w["name"]) for w in body["result"]]
        if wanted is not None and wanted not in names:
            raise WorkflowNotFoundError(
                f"no workflow {wanted!r} on {self._where} (workflows: "
                f"{', '.join(names) or 'none'}): check --workflow"
            )
        return names

    async def _list(
        self,
        c: httpx.AsyncClient,
        workflow: str,
        *,
        tenant: str | None,
        status: str | None,
        want: int | None,
    ) -> list[dict[str, Any]]:
        """Up to ``want`` (all if None) list items of one workflow, newest first."""
        per_page = _PER_PAGE if want is None else min(_PER_PAGE, want)
        items: list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            params: dict[str, Any] = {"page": page, "per_page": per_page}
            if status is not None:
                params["status"] = status
            body = await self._call(c, "GET", _path(workflow), tenant=tenant, params=params)
            result = body["result"]
            items += result
            pages = (body.get("result_info") or {}).get("total_pages", page)
            if not result or page >= pages or (want is not None and len(items) >= want):
                break
        return items if want is None else items[:want]

    async def _detail(
        self, c: httpx.AsyncClient, workflow: str, id: str, tenant: str | None
    ) -> dict[str, Any]:
        body = await self._call(
            c, "GET", _path(workflow, id), tenant=tenant, instance=(id, (workflow, tenant))
        )
        result: dict[str, Any] = body["result"]
        return result

    async def _resolve(
        self, c: httpx.AsyncClient, id: str, workflow: str | None, tenant: str | None
    ) -> Place:
        if workflow is not None and tenant is not None and len(tenant_scopes(tenant)) == 1:
            return workflow, tenant  # the server says "not found" if it is not there
        # Every workflow, every tenant (dynwf dev lists them all without ?tenant=): the
        # places outside the filters let a not-found message say where the id is.
        places: list[Place] = []
        for name in await self._workflows(c, workflow):
            for item in await self._list(c, name, tenant=None, status=None, want=None):
                if item.get("id") == id:
                    places.append((name, str(item.get("tenant") or "")))
        return pick(id, places, workflow=workflow, tenant=tenant, where=f"on {self._where}")

    async def _call(
        self,
        c: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        tenant: str | None = None,
        params: dict[str, Any] | None = None,
        content: str | None = None,
        instance: tuple[str, tuple[str, str | None]] | None = None,
    ) -> dict[str, Any]:
        """The response envelope of one call, or the error it stands for."""
        query = dict(params or {})
        if tenant is not None:
            query["tenant"] = tenant
        headers = {"content-type": "application/json"} if content is not None else None
        try:
            resp = await c.request(method, path, params=query, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise DevServerError(
                f"{self._where} did not answer {method} {API}{path} "
                f"({type(exc).__name__}: {exc or 'no detail'}): is `dynwf dev` still running? "
                "Run the command again once it is up, or stop it to read the journal directly"
            ) from None
        try:
            body = resp.json()
            ok = bool(body["success"])
        except (ValueError, KeyError, TypeError):
            raise DevServerError(
                f"{self._where} answered {method} {API}{path} with HTTP {resp.status_code} "
                "and no explorer API envelope: is that URL a `dynwf dev`?"
            ) from None
        if ok and resp.is_success:
            envelope: dict[str, Any] = body
            return envelope
        raise self._error(resp.status_code, body, method, path, instance)

    def _error(
        self,
        status: int,
        body: dict[str, Any],
        method: str,
        path: str,
        instance: tuple[str, tuple[str, str | None]] | None,
    ) -> Exception:
        errors = body.get("errors") or [{}]
        message = str(errors[0].get("message", "unknown error"))
        if status == 404 and message.startswith("Workflow instance") and instance is not None:
            id, (workflow, tenant) = instance
            return InstanceNotFoundError(
                f"no instance {id!r} in workflow {workflow!r}"
                + (f" tenant {tenant!r}" if tenant else "")
                + f" on {self._where}: `dynwf inspect` lists the instances"
            )
        if status == 404 and message.startswith("Workflow '"):
            return WorkflowNotFoundError(
                f"{message.rstrip('.')} on {self._where}: check --workflow "
                "(`dynwf inspect` lists the instances of every workflow)"
            )
        if status == 409 and "already in use" in message:
            return InstanceExistsError(f"{message.rstrip('.')} ({self._where})")
        if status == 409 or "cannot_" in message:
            at = f"{place_text((instance[1][0], instance[1][1] or ''))}, " if instance else ""
            return InvalidStateError(f"{message} ({at}{self._where})")
        if status == 400:
            return ValidationError(f"{self._where} rejected {method} {path}: {message}")
        return DevServerError(
            f"{self._where} failed {method} {API}{path} (HTTP {status}): {message}"
        )


def _path(workflow: str, *rest: str) -> str:
    parts = ["workflows", workflow, "instances", *rest]
    return "/" + "/".join(quote(p, safe="") for p in parts)
