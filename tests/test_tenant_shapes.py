"""What a tenant's code gets, shaped as on Cloudflare: wait_for_event results and instance handles.

workerd's frozen tenant SDK hands a ``wait_for_event`` result over unconverted (a JS
object) and ``env.WORKFLOWS`` create/get back as a plain dict of an id and JS
functions. Code reading them any other way fails here too, with the portable form.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dynwf.testing import ProjectHarness, introspect_workflow_instance

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = pytest.mark.slow

SHAPES = """
from js import Object
from pyodide.ffi import to_js
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc


def _error(call):
    try:
        call()
    except (AttributeError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        raw = await step.wait_for_event("decision", "decision", timeout="1 hour")
        decision = python_from_rpc(raw)
        return {
            "subscript": _error(lambda: raw["payload"]),
            "get": _error(lambda: raw.get("payload")),
            "payload_subscript": _error(lambda: raw.payload["by"]),
            "attribute": raw.payload.by,
            "type": raw.type,
            "converted": decision["payload"],
            "timestamp": type(decision["timestamp"]).__name__,
            "naive": decision["timestamp"].tzinfo is None,
        }


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        instance = await self.env.WORKFLOWS.create({"id": "s-1", "params": {}})
        found = await self.env.WORKFLOWS.get("s-1")
        raw_status = await found["status"]()
        status = python_from_rpc(raw_status)
        try:
            await found["sendEvent"]({"type": "decision", "payload": {"by": "max"}})
            send_dict = "no error"
        except TypeError as exc:
            send_dict = f"TypeError: {exc}"
        event = {"type": "decision", "payload": {"by": "max"}}
        await found["sendEvent"](to_js(event, dict_converter=Object.fromEntries))
        return Response.json(
            {
                "id": instance["id"],
                "keys": sorted(found),
                "attribute": _error(lambda: instance.id),
                "status_attribute": _error(lambda: found.status),
                "status_subscript": _error(lambda: raw_status["status"]),
                "status": status["status"],
                "send_dict": send_dict,
            }
        )
"""


@pytest.fixture(params=["inline", "process"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProjectHarness]:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    (root / "tenants" / "shapes").mkdir()
    (root / "tenants" / "shapes" / "worker.py").write_text(SHAPES)
    h = ProjectHarness(root, tmp_path / "state", isolation=request.param)
    await h.start()
    yield h
    await h.stop()


async def test_tenant_instance_handle_is_a_dict_and_wait_result_a_js_object(
    harness: ProjectHarness,
) -> None:
    instance = await introspect_workflow_instance(harness.tenant("shapes"), "s-1")
    response = await harness.fetch("/shapes/")
    assert response.status == 200, await response.text()
    got = await response.json_body()

    assert got["id"] == "s-1"
    assert got["keys"] == ["id", "pause", "restart", "resume", "sendEvent", "status", "terminate"]
    assert got["attribute"].startswith("AttributeError: instance.id does not work on Cloudflare")
    assert 'use handle["id"]' in got["attribute"]
    assert 'python_from_rpc(await handle["status"]())' in got["status_attribute"]
    assert got["status_subscript"].startswith("TypeError: 'JsProxy' object is not subscriptable")
    assert got["status"] in {"queued", "running", "waiting"}
    assert got["send_dict"].startswith("TypeError: sendEvent got a dict")
    assert "dict_converter=Object.fromEntries" in got["send_dict"]

    # The event sent with to_js arrived: the run completes with what it saw.
    await instance.wait_for_status("complete")
    out = await instance.get_output()
    assert out["subscript"].startswith("TypeError: 'JsProxy' object is not subscriptable")
    assert "python_from_rpc(value)" in out["subscript"]
    assert out["get"].startswith("AttributeError: JS object has no method 'get'")
    assert out["payload_subscript"].startswith("TypeError: 'JsProxy' object is not subscriptable")
    assert out["attribute"] == "max" and out["type"] == "decision"
    assert out["converted"] == {"by": "max"}
    assert out["timestamp"] == "datetime" and out["naive"] is True
