"""The explorer REST API under ``/cdn-cgi/explorer/api``, as wrangler 4.86's dev server has it.

Paths, envelope, key order, error codes and messages follow
``tests/fixtures/explorer/OBSERVED.md``, so ``wrangler workflows ... --local`` works
against ``dynwf dev``. Deliberate differences from wrangler, where wrangler has a bug
or where dynwf's explorer API spec decides otherwise:

1. Bad input is a 400 with a message saying what is wrong: an invalid instance id on
   create (wrangler: 500 "Workflow instance has invalid id"), a body that is not JSON
   on create, PATCH or event (wrangler: create ignores it, PATCH answers 500 with the
   JS parser's message, events take it as no payload), a body that is not an object,
   unknown keys in a create body, an invalid event type (wrangler never checks it).
   An empty body is allowed: create takes ``{}``, PATCH an empty object (so the
   "Invalid action 'undefined'" message), an event no payload (``null``).
2. State conflicts are a 409 with dynwf's message (code 10001): create with an id
   already in use (wrangler: 200 and nothing happens), terminate of a finished
   instance (wrangler: 500), pause of a finished instance and an event sent to a
   finished instance (wrangler: 200, ignored). What is allowed is the engine's
   state table (``dynwf.engine._states``), not this module's.
3. Statuses are dynwf's real ones: an instance sleeping, in a retry delay or waiting
   for an event is ``waiting`` (wrangler shows ``running``); ``queued`` is visible.
4. Nothing is created by looking: unknown ids never leave phantom entries, and
   counts are never cached, so they are exact at once.
5. ``DELETE .../instances/:id`` and ``DELETE /workflows/:name`` (every instance of the
   workflow, or of one tenant with ``?tenant=``) stop and forget instances as wrangler
   does; a deleted instance answers 404 at once (wrangler keeps serving its detail
   until restart). The journal keeps its facts, marked deleted.
   ``PATCH .../status`` takes ``{"action": "restart", "from": {"name", "count"?,
   "type"?}}`` (restart from a step); an unknown step is a 400 naming it; beside
   another action ``from`` is ignored, as wrangler 4.86 does.
   ``POST .../instances/batch/delete`` with ``{"instances": [id, ...]}`` (1 to 100, a
   repeated id once) answers ``{"deleted": [{"id"}], "errors": [{"id", "code",
   "message"}]}``, the shape of Cloudflare's API and binding ``deleteBatch``; wrangler
   4.86's dev server has no such route (its CLI has no ``instances delete``).
6. ``page`` and ``per_page`` must be integers (wrangler echoes ``page=1.5`` and
   answers an empty page).
7. Instance detail ``queued`` is the creation time; wrangler moves it to the restart
   time after a restart. Errors keep their real ``name`` (wrangler wraps run()
   errors as ``{"name": "Error", "message": "<name>: <message>"}``); a timed-out wait
   step's error has a message (wrangler's is empty); a wait step's payload is shown
   as sent (wrangler shows a missing payload as ``{}``). A step's ``config`` holds the
   engine's defaults (retry delay 10000 ms; wrangler's local engine uses 1000), and
   the ``-N`` of a step name is dynwf's step count (sleeps count per name and duration).
8. ``GET /cdn-cgi/explorer/api`` (OpenAPI document) and ``GET /local/workers`` are not
   served: they answer the plain-text 404. The explorer UI is dynwf's own, at
   ``/cdn-cgi/explorer/`` (``dynwf.server._ui``), and reads only this API.
9. Unexpected server errors are a 500 with code 10000 and a one-line message, as
   wrangler's ``app.onError``; the traceback goes to the ``dynwf.server`` log.

dynwf extensions: ``?tenant=<scope>`` on any route scopes instance calls to that
tenant (an empty value is the default scope ``""``). Without it, lists and counts
cover every tenant and an id is looked up in all of them: one match is used, several
are a 400 asking for ``?tenant=``. Results carry ``tenant`` (list items, create,
detail), per-step ``executions``, ``replays`` and (for ``step.do``) ``unreported``, and detail ``warnings``. For the
explorer UI's timeline the detail also carries ``passes`` (run passes so far),
``events`` (every buffered event: ``type``, ``payload``, ``timestamp``, ``consumed``)
and per step ``wake_at`` (an unfinished step's next timer: sleep end, retry, wait
deadline; else null), plus ``sleep_ms`` on sleeps and ``event_type`` on waits. The
create body may carry ``retention`` (``{"successRetention", "errorRetention"}``, as the
binding's create), and the detail says when a finished instance with one ``expires``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from dynwf.engine import (
    Engine,
    InstanceState,
    check_id_batch,
    instance_detail,
    instance_list_item,
)
from dynwf.errors import (
    DynwfError,
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    ValidationError,
    WorkflowNotFoundError,
)

log = logging.getLogger("dynwf.server")

API_PREFIX = "/cdn-cgi/explorer/api"
NOT_FOUND = 10501
FAILED = 10001
INTERNAL = 10000
# The order wrangler writes a workflow's counts in, and the status filter's enum.
STATUSES = (
    "complete",
    "errored",
    "paused",
    "queued",
    "running",
    "terminated",
    "waiting",
    "waitingForPause",
)
_FILTER_ENUM = (
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waitingForPause",
    "waiting",
)
ACTIONS = ("pause", "resume", "restart", "terminate")


class ApiError(Exception):
    """An answer in the error envelope: HTTP status, then one error per message."""

    def __init__(self, status: int, *messages: str, code: int = FAILED) -> None:
        super().__init__(messages[0])
        self.status = status
        self.code = code
        self.messages = messages


def json_response(status: int, body: Mapping[str, Any]) -> Response:
    """Compact JSON, ``Content-Type: application/json`` with no charset, as wrangler."""
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(data, status_code=status, media_type="application/json")


def ok(result: Any, result_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = dict(result_info)
    return body


def failure(error: ApiError) -> Response:
    errors = [{"code": error.code, "message": m} for m in error.messages]
    body = {"success": False, "errors": errors, "messages": [], "result": None}
    return json_response(error.status, body)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


_ABSENT = object()


def _json_body(body: bytes) -> Any:
    """The parsed body, ``_ABSENT`` when empty; 400 when it is not JSON."""
    if not body.strip():
        return _ABSENT
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None


def _object_body(body: bytes, example: str) -> dict[str, Any]:
    value = _json_body(body)
    if value is _ABSENT:
        return {}
    if not isinstance(value, dict):
        raise ApiError(
            400, f"the request body must be a JSON object like {example}, got {_kind(value)}"
        )
    return value


@dataclass(frozen=True, slots=True)
class Call:
    """One API request, reduced to what the handlers read."""

    query: Mapping[str, str]
    body: bytes

    @property
    def tenant(self) -> str | None:
        return self.query.get("tenant")


Handler = Callable[..., Awaitable[dict[str, Any]]]


class Explorer:
    """The API's handlers over one engine; ``handle`` routes a request to one of them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # method, path pattern ("*" = one segment), handler: the whole API surface.
        self.routes: list[tuple[str, tuple[str, ...], Handler]] = [
            ("GET", ("workflows",), self.list_workflows),
            ("GET", ("workflows", "*"), self.get_workflow),
            ("DELETE", ("workflows", "*"), self.delete_workflow),
            ("GET", ("workflows", "*", "instances"), self.list_instances),
            ("POST", ("workflows", "*", "instances"), self.create_instance),
            ("GET", ("workflows", "*", "instances", "*"), self.get_instance),
            ("DELETE", ("workflows", "*", "instances", "*"), self.delete_instance),
            ("POST", ("workflows", "*", "instances", "batch", "delete"), self.delete_batch),
            ("PATCH", ("workflows", "*", "instances", "*", "status"), self.change_status),
            (
                "POST",
                ("workflows", "*", "instances", "*", "events", "*"),
                self.send_event,
            ),
        ]

    def route(self, method: str, segments: list[str]) -> tuple[Handler, list[str]] | None:
        method = "GET" if method == "HEAD" else method
        for m, pattern, handler in self.routes:
            if m != method or len(pattern) != len(segments):
                continue
            args = []
            for want, got in zip(pattern, segments, strict=True):
                if want == "*" and got:
                    args.append(got)
                elif want != got:
                    break
            else:
                return handler, args
        return None

    async def run(self, handler: Handler, args: list[str], call: Call) -> Response:
        """Run a routed handler; every failure becomes the error envelope."""
        try:
            return json_response(200, await handler(call, *args))
        except ApiError as exc:
            return failure(exc)
        except ValidationError as exc:
            return failure(ApiError(400, str(exc)))
        except (InvalidStateError, InstanceExistsError) as exc:
            return failure(ApiError(409, str(exc)))
        except (WorkflowNotFoundError, InstanceNotFoundError) as exc:
            return failure(ApiError(404, str(exc), code=NOT_FOUND))
        except DynwfError as exc:
            return failure(ApiError(500, str(exc)))
        except Exception as exc:
            log.exception("explorer API handler %s failed", handler.__name__)
            line = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return failure(ApiError(500, line, code=INTERNAL))

    # -- lookups ----------------------------------------------------------------------
    def _workflow(self, name: str) -> str:
        if name not in self.engine.workflows:
            raise ApiError(404, f"Workflow '{name}' not found.", code=NOT_FOUND)
        return name

    def _scope(self, workflow: str, id: str, tenant: str | None) -> str:
        if tenant is not None:
            return tenant
        # The engine has no lookup by id across scopes, so scan the workflow's listing.
        scopes: list[str] = sorted(
            {r.scope for r in self.engine.instances(workflow=workflow) if r.id == id}
        )
        if not scopes:
            raise ApiError(404, f"Workflow instance '{id}' not found.", code=NOT_FOUND)
        if len(scopes) > 1:
            raise ApiError(
                400,
                f"instance id '{id}' is ambiguous in workflow '{workflow}': tenants "
                f"{', '.join(repr(s) for s in scopes)} each have one; pass ?tenant=<tenant>",
            )
        return scopes[0]

    def _state(self, workflow: str, id: str, tenant: str | None) -> tuple[str, InstanceState]:
        scope = self._scope(workflow, id, tenant)
        try:
            return scope, self.engine.lookup(workflow, scope, id)
        except InstanceNotFoundError:
            where = f" in tenant '{tenant}'" if tenant is not None else ""
            raise ApiError(
                404, f"Workflow instance '{id}' not found{where}.", code=NOT_FOUND
            ) from None

    def _counts(self, workflow: str, tenant: str | None) -> dict[str, int]:
        if tenant is None:
            return self.engine.status_counts(workflow)
        return dict(
            Counter(r.status for r in self.engine.instances(workflow=workflow, scope=tenant))
        )

    # -- workflows --------------------------------------------------------------------
    async def list_workflows(self, call: Call) -> dict[str, Any]:
        result = [
            {"name": wf.name, "class_name": wf.class_name, "script_name": wf.script_name}
            for wf in self.engine.workflows.values()
        ]
        return ok(result, {"count": len(result)})

    async def get_workflow(self, call: Call, name: str) -> dict[str, Any]:
        wf = self.engine.workflows.get(self._workflow(name))
        assert wf is not None
        counts = self._counts(name, call.tenant)
        instances = {s: counts.get(s, 0) for s in STATUSES}
        instances.update((s, n) for s, n in counts.items() if s not in instances)
        return ok(
            {
                "name": wf.name,
                "class_name": wf.class_name,
                "script_name": wf.script_name,
                "instances": instances,
            }
        )

    async def delete_workflow(self, call: Call, name: str) -> dict[str, Any]:
        self._workflow(name)
        for row in self.engine.instances(workflow=name, scope=call.tenant):
            await self.engine.delete(self.engine.lookup(name, row.scope, row.id))
        return ok({"status": "ok", "success": True})

    # -- instances --------------------------------------------------------------------
    async def list_instances(self, call: Call, name: str) -> dict[str, Any]:
        self._workflow(name)
        page, per_page, status = _list_query(call.query)
        counts = self._counts(name, call.tenant)
        total = counts.get(status, 0) if status is not None else sum(counts.values())
        offset = (page - 1) * per_page
        rows = (
            self.engine.instances(
                workflow=name, scope=call.tenant, status=status, limit=per_page, offset=offset
            )
            if offset < total
            else []
        )
        info = {
            "page": page,
            "per_page": per_page,
            "total_count": total,
            "total_pages": max(1, math.ceil(total / per_page)),
            "status_counts": {s: counts[s] for s in _ordered(counts)},
        }
        return ok([instance_list_item(r) for r in rows], info)

    async def create_instance(self, call: Call, name: str) -> dict[str, Any]:
        self._workflow(name)
        body = _object_body(call.body, '{"id": "...", "params": {...}}')
        unknown = sorted(set(body) - {"id", "params", "retention"})
        if unknown:
            raise ApiError(
                400,
                f"unknown key(s) {', '.join(repr(k) for k in unknown)} in the create body; "
                "allowed: 'id', 'params', 'retention'",
            )
        # wrangler stores missing params as {}, so the detail shows "params": {}.
        options: dict[str, Any] = {"params": body.get("params", {})}
        for key in ("id", "retention"):
            if key in body:
                options[key] = body[key]
        scope = call.tenant or ""
        inst = await self.engine.binding(name, scope=scope).create(options)
        return ok({"id": inst.id, "tenant": scope})

    async def get_instance(self, call: Call, name: str, id: str) -> dict[str, Any]:
        self._workflow(name)
        _, st = self._state(name, id, call.tenant)
        return ok(instance_detail(st))

    async def delete_instance(self, call: Call, name: str, id: str) -> dict[str, Any]:
        self._workflow(name)
        _, st = self._state(name, id, call.tenant)
        await self.engine.delete(st)
        return ok({"success": True})

    async def delete_batch(self, call: Call, name: str) -> dict[str, Any]:
        """``{"instances": [id, ...]}`` -> ``{"deleted": [{"id"}], "errors": [...]}``."""
        self._workflow(name)
        body = _object_body(call.body, '{"instances": ["id", ...]}')
        unknown = sorted(set(body) - {"instances"})
        if unknown or "instances" not in body:
            raise ApiError(
                400,
                'the batch delete body is {"instances": ["id", ...]} (1 to 100 ids); got '
                f"keys {', '.join(repr(k) for k in sorted(body)) or 'none'}",
            )
        ids = body["instances"]
        if call.tenant is not None:
            result = await self.engine.binding(name, scope=call.tenant).delete_batch(ids)
            return ok(result)
        # No ?tenant=: each id is looked up in every tenant, as for one instance.
        unique = check_id_batch(ids, what="the batch delete")
        deleted: list[dict[str, str]] = []
        errors: list[dict[str, str]] = []
        for id in unique:
            try:
                scope = self._scope(name, id, None)
            except ApiError as exc:
                code = "instance.not_found" if exc.status == 404 else "instance.ambiguous"
                errors.append({"id": id, "code": code, "message": str(exc)})
                continue
            done = await self.engine.binding(name, scope=scope).delete_batch([id])
            deleted += done["deleted"]
            errors += done["errors"]
        return ok({"deleted": deleted, "errors": errors})

    async def change_status(self, call: Call, name: str, id: str) -> dict[str, Any]:
        self._workflow(name)
        body = _object_body(call.body, '{"action": "pause"}')
        action = body.get("action", _ABSENT)
        if action not in ACTIONS:
            shown = "undefined" if action is _ABSENT else _js(action)
            raise ApiError(400, f"Invalid action '{shown}'. Must be one of: {', '.join(ACTIONS)}.")
        # wrangler 4.86 ignores "from" beside any other action (recorded); so does dynwf
        start = body.get("from") if action == "restart" else None
        scope, _ = self._state(name, id, call.tenant)
        inst = await self.engine.binding(name, scope=scope).get(id)
        if start is not None:
            await inst.restart({"from": start})  # a bad or unknown step: 400, nothing changed
        else:
            await getattr(inst, action)()
        return ok({"success": True})

    async def send_event(self, call: Call, name: str, id: str, type_: str) -> dict[str, Any]:
        self._workflow(name)
        payload = _json_body(call.body)
        scope, _ = self._state(name, id, call.tenant)
        inst = await self.engine.binding(name, scope=scope).get(id)
        await inst.send_event({"type": type_, "payload": None if payload is _ABSENT else payload})
        return ok({"success": True})


def _js(value: Any) -> str:
    """A value as JavaScript's template literal would show it (wrangler's messages)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, list):
        return ",".join(_js(v) for v in value)
    return json.dumps(value)


def _ordered(counts: Mapping[str, int]) -> list[str]:
    known = [s for s in STATUSES if counts.get(s)]
    return known + sorted(s for s in counts if s not in STATUSES and counts[s])


def _number(query: Mapping[str, str], key: str) -> float | None:
    """A query number as zod coerces it (``Number(value)``); a 400 when it is not one."""
    raw = query.get(key)
    if raw is None:
        return None
    text = raw.strip()
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = math.nan
    if math.isnan(value) or text.lower() in ("inf", "+inf", "-inf", "nan"):
        raise ApiError(400, f'{key}: Expected query param to be number but received "{raw}"')
    return value


def _list_query(query: Mapping[str, str]) -> tuple[int, int, str | None]:
    """``page``, ``per_page`` and ``status``, checked with zod's messages, all issues at once."""
    page, per_page = _number(query, "page"), _number(query, "per_page")
    errors = []
    for key, value, low, high in (("page", page, 1, None), ("per_page", per_page, 1, 100)):
        if value is None:
            continue
        if math.isinf(value) or value != int(value):
            errors.append(f"{key}: Expected integer, received float")
        elif value < low:
            errors.append(f"{key}: Number must be greater than or equal to {low}")
        elif high is not None and value > high:
            errors.append(f"{key}: Number must be less than or equal to {high}")
    status = query.get("status")
    if status is not None and status not in _FILTER_ENUM:
        expected = " | ".join(f"'{s}'" for s in _FILTER_ENUM)
        errors.append(f"status: Invalid enum value. Expected {expected}, received '{status}'")
    if errors:
        raise ApiError(400, *errors)
    return (
        int(page) if page is not None else 1,
        int(per_page) if per_page is not None else 25,
        status,
    )
