"""What a state client returns, the protocol both clients follow, and how an id is resolved.

JSON shapes (stable; ``dynwf inspect --json`` and ``dynwf instances ... --json``
print exactly these):

    InstanceSummary.as_json()
        {"id": str, "tenant": str, "workflow": str, "status": str,
         "created": str | null, "steps": int}
    Steered.as_json()
        {"id": str, "workflow": str, "tenant": str,
         "action": "pause" | "resume" | "terminate" | "restart" | "send_event" | "create"
                   | "delete",
         "status": str,                      # the status right after the action ("deleted")
         "previous": str | null}             # the status right before it (null: created)
    InstanceDetail (a dict): ``id`` and ``workflow``, then the explorer API's
    instance detail as ``dynwf.engine.instance_detail`` writes it (``dynwf dev``
    serves the same), whose ``tenant`` comes first here:
        {"id": str, "workflow": str, "tenant": str,
         "status": str, "params": any, "queued": str | null, "start": str | null,
         "end": str | null, "output": any, "error": {"message", "name"} | null,
         "steps": [step, ...], "step_count": int, "warnings": [str],
         "events": [{"type", "payload", "timestamp", "consumed"}],  # every event sent
         "passes": int,                      # run passes so far
         "parked": str | null,               # why its code would not load
         "expires": str | null}              # when a finished instance with a retention goes
      step of type "step":
         {"name": "<name>-<count>", "start", "end", "success": bool | null,
          "type": "step", "output"? (only when success), "config",
          "attempts": [{"start", "end", "success": bool | null, "error"}],
          "executions": int, "replays": int, "unreported": int, "wake_at": str | null}
      step of type "sleep":
         {"name", "start", "end", "finished": bool, "type": "sleep", "error": null,
          "executions": int, "replays": int, "wake_at": str | null, "sleep_ms": int}
      step of type "waitForEvent":
         {"name", "start", "end", "finished": bool, "type": "waitForEvent", "error",
          "output": {"type", "payload", "timestamp"} | null, "executions": int, "replays": int,
          "wake_at": str | null, "event_type": str}
      "wake_at" is an unfinished step's next timer (sleep end, retry, wait deadline).

Times are ISO 8601 UTC with milliseconds and a ``Z``. A tenant of ``""`` is the
platform's own scope (an instance no tenant created). ``executions`` counts how
often a step's callback began (as the process running it reported, after the
callback's code up to its first suspension point ran), ``unreported`` the attempts
journaled as begun without that report (their process died, or they still blocked
at their timeout), ``replays`` how often a later pass took its result from the
journal instead.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from dynwf.client._errors import AmbiguousInstanceError
from dynwf.engine import Status
from dynwf.errors import InstanceNotFoundError, ValidationError

InstanceDetail = dict[str, Any]
Action = Literal["pause", "resume", "terminate", "restart"]
Place = tuple[str, str]  # (workflow, tenant)
# What a listing filters on: every status but "unknown" (the explorer API's enum).
STATUSES = tuple(s.value for s in Status if s is not Status.UNKNOWN)


@dataclass(frozen=True, slots=True)
class InstanceSummary:
    """One line of an instance listing."""

    id: str
    tenant: str
    workflow: str
    status: str
    created: str | None
    steps: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Steered:
    """What a pause, resume, terminate, restart or send_event did, and the status after it."""

    id: str
    workflow: str
    tenant: str
    action: Action | Literal["send_event", "create", "delete"]
    status: str
    previous: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class StateClient(Protocol):
    """Reads and steers the instances of one project's state, wherever it is held."""

    kind: Literal["dev", "journal"]
    location: str  # the dev server's URL or the journal's path

    async def list_instances(
        self,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[InstanceSummary]:
        """Instances, newest first; ``None`` filters match everything."""
        ...

    async def describe(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> InstanceDetail: ...

    async def pause(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered: ...

    async def resume(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered: ...

    async def terminate(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered: ...

    async def restart(
        self,
        id: str,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        start: dict[str, Any] | None = None,
    ) -> Steered:
        """From the top, or with ``start`` (``{"name", "count"?, "type"?}``) from that step."""
        ...

    async def send_event(
        self,
        id: str,
        type: str,
        payload: Any,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
    ) -> Steered: ...

    async def delete(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered:
        """Stop the instance if it runs and delete it; ``status`` is then ``"deleted"``."""
        ...

    async def create(
        self,
        workflow: str,
        *,
        metadata: Any,
        params: Any = None,
        id: str | None = None,
        retention: dict[str, Any] | None = None,
    ) -> Steered:
        """A new instance of ``workflow`` for the tenant ``metadata`` names, as the
        dispatcher's wrapped binding makes it: ``params`` inside the envelope, in the
        tenant's scope. ``id`` defaults to a new UUID; ``retention`` is create's
        ``{"successRetention", "errorRetention"}``."""
        ...


class Steering:
    """``pause``/``resume``/``terminate``/``restart`` of a client, through its ``_steer``."""

    async def _steer(
        self,
        id: str,
        workflow: str | None,
        tenant: str | None,
        action: Action,
        start: dict[str, Any] | None = None,
    ) -> Steered:
        raise NotImplementedError

    async def pause(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered:
        return await self._steer(id, workflow, tenant, "pause")

    async def resume(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered:
        return await self._steer(id, workflow, tenant, "resume")

    async def terminate(
        self, id: str, *, workflow: str | None = None, tenant: str | None = None
    ) -> Steered:
        return await self._steer(id, workflow, tenant, "terminate")

    async def restart(
        self,
        id: str,
        *,
        workflow: str | None = None,
        tenant: str | None = None,
        start: dict[str, Any] | None = None,
    ) -> Steered:
        return await self._steer(id, workflow, tenant, "restart", start)


def check_listing(status: str | None, limit: int) -> None:
    if status is not None and status not in STATUSES:
        raise ValidationError(
            f"status {status!r} is not an instance status; use one of: {', '.join(STATUSES)}"
        )
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit {limit!r} must be a whole number of at least 1")


def place_text(place: Place) -> str:
    workflow, tenant = place
    return f"workflow {workflow!r} " + (
        f"tenant {tenant_label(tenant)!r}" if tenant else "(no tenant)"
    )


def place_flags(place: Place, among: list[Place] | None = None) -> str:
    """The flags that pick ``place`` out of ``among`` (only those that differ), or both,
    quoted for a POSIX shell so they paste as they are."""
    workflow, tenant = place
    flags = []
    if among is None or len({p[0] for p in among}) > 1:
        flags.append(f"--workflow {shlex.quote(workflow)}")
    if among is None or len({p[1] for p in among}) > 1:
        flags.append(f"--tenant {tenant_arg(tenant)}")
    return " ".join(flags)


def tenant_arg(scope: str) -> str:
    """The shortest ``--tenant`` value that selects exactly ``scope``, quoted for a POSIX
    shell: ``acme`` for the scope of ``{"tenantId": "acme"}``, else the scope itself."""
    label = tenant_label(scope)
    if scope and label != scope and tenant_scopes(label)[-1] == scope:
        return shlex.quote(label)
    return shlex.quote(scope)


def envelope(metadata: Any, params: Any) -> dict[str, Any]:
    """The params a dispatcher's wrapped binding stores: the tenant's params in the envelope."""
    from dynwf.dispatch import ENVELOPE_KEY

    return {ENVELOPE_KEY: metadata, "params": params}


def tenant_params(params: Any) -> tuple[Any, Any] | None:
    """``(metadata, the tenant's own params)`` from an instance's stored params, or None
    when they carry no dispatcher envelope (an instance created without one)."""
    from dynwf.dispatch import ENVELOPE_KEY

    if isinstance(params, dict) and ENVELOPE_KEY in params:
        return params[ENVELOPE_KEY], params.get("params")
    return None


def filters_text(workflow: str | None, tenant: str | None) -> str:
    parts = []
    if workflow is not None:
        parts.append(f"workflow {workflow!r}")
    if tenant is not None:
        parts.append(f"tenant {tenant_label(tenant)!r}" if tenant else "no tenant")
    return f" ({', '.join(parts)})" if parts else ""


def tenant_scopes(tenant: str) -> tuple[str, ...]:
    """The scopes a ``--tenant`` value matches: itself, and for a bare tenant id such as
    ``acme`` also the scope of the default metadata ``{"tenantId": "acme"}``; metadata
    JSON also matches its canonical form (the scope ``dynwf.dispatch.scope_of`` makes)."""
    from dynwf.dispatch import scope_of

    if tenant == "":
        return (tenant,)
    if tenant.lstrip().startswith(("{", "[", '"')):
        try:  # metadata as a person writes it (spaces, any key order) is the same scope
            canonical = scope_of(json.loads(tenant))
        except ValueError:
            return (tenant,)
        return (canonical,) if canonical == tenant else (tenant, canonical)

    return (tenant, scope_of({"tenantId": tenant}))


def tenant_label(scope: str) -> str:
    """A tenant as a person names it: ``acme`` for the scope of the default metadata
    ``{"tenantId": "acme"}``; ``acme {"plan":"pro"}`` when the metadata has more keys
    (so two scopes never share a label); ``-`` for no tenant; else the scope as stored."""
    if not scope:
        return "-"
    try:
        meta = json.loads(scope)
    except ValueError:
        return scope
    if isinstance(meta, dict) and isinstance(meta.get("tenantId"), str):
        rest = {k: v for k, v in meta.items() if k != "tenantId"}
        if not rest:
            return str(meta["tenantId"])
        extra = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return f"{meta['tenantId']} {extra}"
    return scope


def pick(
    id: str, places: list[Place], *, workflow: str | None, tenant: str | None, where: str
) -> Place:
    """The one place that holds ``id`` and matches the filters, else a not-found/ambiguous error.

    ``places`` is every (workflow, tenant) known to hold the id, filtered or not: the
    ones outside the filters make the not-found message say where the id does exist.
    ``where`` completes "no instance 'x' ...", e.g. "in the journal <path>".
    """
    found = sorted(set(places))
    matching = [
        p
        for p in found
        if (workflow is None or p[0] == workflow)
        and (tenant is None or p[1] in tenant_scopes(tenant))
    ]
    if len(matching) == 1:
        return matching[0]
    if matching:
        listed = ", ".join(place_text(p) for p in matching)
        raise AmbiguousInstanceError(
            f"instance id {id!r} is used in {len(matching)} places {where}: {listed}; "
            f"pass --workflow and/or --tenant to choose one, e.g. "
            f"{place_flags(matching[0], matching)}",
            matching,
        )
    asked = filters_text(workflow, tenant)
    if found:
        listed = ", ".join(place_text(p) for p in found)
        has = "has one" if len(found) == 1 else "each have one"
        raise InstanceNotFoundError(
            f"no instance {id!r}{asked} {where}, but {listed} {has}: "
            f"pass {place_flags(found[0])} to use it"
        )
    raise InstanceNotFoundError(
        f"no instance {id!r}{asked} {where}: `dynwf inspect` lists the instances"
    )
