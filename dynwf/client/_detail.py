"""An instance's folded state as the explorer API's instance detail (see ``_model`` for the shape).

The engine is to export ``instance_detail(st)`` for its dev server; when it does,
the journal client uses that one, so the journal and the dev server can never
describe an instance differently. Until then this mapping stands in for it.
"""

from __future__ import annotations

from typing import Any

import dynwf.engine
from dynwf.client._model import InstanceDetail
from dynwf.engine import InstanceState, StepState, iso_ms


def detail_of(st: InstanceState) -> InstanceDetail:
    """``{"id", "workflow", "tenant", <explorer detail>..., "warnings"}`` for one instance."""
    engine_detail = getattr(dynwf.engine, "instance_detail", None)
    body: dict[str, Any] = dict(engine_detail(st)) if engine_detail else _detail(st)
    body.pop("id", None)
    body.pop("workflow", None)
    body.pop("tenant", None)
    return {"id": st.id, "workflow": st.workflow, "tenant": st.scope, **body}


def _detail(st: InstanceState) -> dict[str, Any]:
    steps = [_step(s) for s in st.steps.values()]
    return {
        "status": st.status.value,
        "params": st.params,
        "queued": iso_ms(st.created),
        "start": iso_ms(st.started),
        "end": iso_ms(st.ended),
        "output": st.output,
        "error": st.error,
        "steps": steps,
        "step_count": len(steps),
        "warnings": [
            {"timestamp": iso_ms(w.ts), "message": w.message, "missing": w.missing, "ran": w.ran}
            for w in st.warnings
        ],
    }


def _step(s: StepState) -> dict[str, Any]:
    head: dict[str, Any] = {
        "name": f"{s.name}-{s.count}",
        "start": iso_ms(s.start),
        "end": iso_ms(s.end),
    }
    counts = {"executions": s.executions, "replays": s.replays}
    if s.kind == "sleep":
        return {**head, "finished": s.done, "type": "sleep", "error": None, **counts}
    if s.kind == "waitForEvent":
        return {
            **head,
            "finished": s.done,
            "type": "waitForEvent",
            "error": s.error,
            "output": s.output,
            **counts,
        }
    success = (s.error is None) if s.done else None
    out: dict[str, Any] = {**head, "success": success, "type": "step"}
    if success:
        out["output"] = s.output  # wrangler omits the key unless the step succeeded
    out["config"] = s.config
    out["attempts"] = [
        {"start": iso_ms(a.start), "end": iso_ms(a.end), "success": a.ok, "error": a.error}
        for a in s.attempts
    ]
    return {**out, **counts}
