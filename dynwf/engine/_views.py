"""Engine state as the explorer API's JSON: wrangler 4.86's field names and key order.

Pure functions, no I/O. Keys wrangler does not have are dynwf extensions and come
after wrangler's own: ``tenant``, ``warnings``, ``passes`` (run passes so far) and
``events`` (every buffered event: ``type``, ``payload``, ``timestamp``, ``consumed``)
on an instance; ``executions``, ``replays`` and ``wake_at`` (an unfinished step's
next timer: sleep end, retry, wait deadline; else null) on each step, plus
``sleep_ms`` on a sleep and ``event_type`` on a wait; ``tenant`` on a list item.
"""

from __future__ import annotations

from typing import Any, Protocol

from dynwf.engine._clock import iso_ms
from dynwf.engine._config import REDACTED, resolve_step_config
from dynwf.engine._model import ErrorDict, InstanceState, StepState
from dynwf.engine._states import Status


class ListedInstance(Protocol):
    """What a listing row needs (``dynwf.journal.InstanceRow`` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def created(self) -> int: ...


def instance_list_item(row: ListedInstance) -> dict[str, Any]:
    """``{"id", "status", "created_on", "tenant"}`` for ``GET .../instances``."""
    return {
        "id": row.id,
        "status": row.status,
        "created_on": iso_ms(row.created),
        "tenant": row.scope,
    }


def instance_detail(st: InstanceState) -> dict[str, Any]:
    """The result of ``GET .../instances/:id``: wrangler has no ``id`` key here, nor do we."""
    steps = [_step(s) for s in st.steps.values()]
    error = st.error if st.status is Status.ERRORED else None
    return {
        "status": st.status.value,
        "params": st.params,
        # The creation time; after a restart wrangler shows the restart time instead,
        # which InstanceState does not keep.
        "queued": iso_ms(st.created),
        "start": iso_ms(st.started),
        "end": iso_ms(st.ended),
        "output": st.output if st.status is Status.COMPLETE else None,
        # The instance error is message-first in wrangler; attempt errors are name-first.
        "error": None if error is None else {"message": _message(error), "name": _name(error)},
        "steps": steps,
        "step_count": len(steps),
        "tenant": st.scope,
        "warnings": [w.message for w in st.warnings],
        # Why a waiting instance cannot run: its code did not load (it runs when it does).
        "parked": st.parked if st.status is Status.WAITING else None,
        "passes": st.passes,
        # A finished instance with a retention is gone after this time (create's retention).
        "expires": iso_ms(st.expires_at),
        "events": [
            {
                "type": e.type,
                "payload": e.payload,
                "timestamp": iso_ms(e.ts),
                "consumed": e.consumed,
            }
            for e in st.events
        ],
    }


def _name(error: ErrorDict) -> str:
    return error.get("name", "Error")


def _message(error: ErrorDict) -> str:
    return error.get("message", "")


def _error(error: ErrorDict | None) -> dict[str, str] | None:
    return None if error is None else {"name": _name(error), "message": _message(error)}


def _step(s: StepState) -> dict[str, Any]:
    name = f"{s.name}-{s.count}"
    extra: dict[str, Any] = {
        "executions": s.executions,
        "replays": s.replays,
        "wake_at": None if s.done else iso_ms(s.wake_at),
    }
    if s.kind == "sleep":
        return {
            "name": name,
            "start": iso_ms(s.start),
            "end": iso_ms(s.end),
            "finished": s.done,
            "type": "sleep",
            "error": None,
            **extra,
            "sleep_ms": s.duration_ms,
        }
    if s.kind == "waitForEvent":
        got = s.output if s.done and s.error is None and isinstance(s.output, dict) else None
        return {
            "name": name,
            "start": iso_ms(s.start),
            "end": iso_ms(s.end),
            "finished": s.done,
            "type": "waitForEvent",
            "error": _error(s.error),
            "output": None
            if got is None
            else {
                "type": got.get("type"),
                "payload": got.get("payload"),
                "timestamp": got.get("timestamp"),
            },
            **extra,
            "event_type": s.event_type,
        }
    success = (s.error is None) if s.done else None
    out: dict[str, Any] = {
        "name": name,
        "start": iso_ms(s.start),
        "end": iso_ms(s.end),
        "success": success,
        "type": "step",
    }
    if success:  # wrangler omits the key (not null) unless the step succeeded
        sensitive = (s.config or {}).get("sensitive") == "output"
        out["output"] = REDACTED if sensitive else s.output
    # The config frozen with the first attempt; wrangler always shows one.
    out["config"] = s.config or resolve_step_config(None, step=s.name).as_dict()
    out["attempts"] = [
        {
            "start": iso_ms(a.start),
            "end": iso_ms(a.end),
            "success": a.ok,
            "error": _error(a.error) if a.ok is False else None,
        }
        for a in s.attempts
    ]
    out.update(extra)
    out["unreported"] = s.unreported
    return out
