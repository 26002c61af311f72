"""The explorer API's tenant extension: ``?tenant=``, ``tenant`` fields, ambiguous ids."""

from __future__ import annotations

import httpx

from tests.conftest import Harness
from tests.fixtures.server_helpers import WF, api, create, detail, quick

__all__ = ["api"]  # the fixture, imported for pytest


async def test_tenant_scopes_create_list_and_counts(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    quick(harness)
    await create(api, harness, "quick-wf", {"id": "a", "params": 1}, tenant="acme")
    await create(api, harness, "quick-wf", {"id": "b", "params": 2})
    every = (await api.get(f"{WF}/quick-wf/instances")).json()
    assert {(i["id"], i["tenant"]) for i in every["result"]} == {("a", "acme"), ("b", "")}
    acme = (await api.get(f"{WF}/quick-wf/instances", params={"tenant": "acme"})).json()
    assert [i["id"] for i in acme["result"]] == ["a"]
    assert acme["result_info"]["status_counts"] == {"complete": 1}
    default = (await api.get(f"{WF}/quick-wf/instances", params={"tenant": ""})).json()
    assert [i["id"] for i in default["result"]] == ["b"]
    counts = (await api.get(f"{WF}/quick-wf", params={"tenant": "zed"})).json()["result"]
    assert sum(counts["instances"].values()) == 0
    d = await detail(api, "quick-wf", "a")  # found in its only tenant without ?tenant=
    assert (d["tenant"], d["output"]) == ("acme", 1)


async def test_tenant_is_required_when_an_id_is_ambiguous(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    quick(harness)
    await create(api, harness, "quick-wf", {"id": "same", "params": "acme"}, tenant="acme")
    await create(api, harness, "quick-wf", {"id": "same", "params": "zed"}, tenant="zed")
    r = await api.get(f"{WF}/quick-wf/instances/same")
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == (
        "instance id 'same' is ambiguous in workflow 'quick-wf': tenants 'acme', 'zed' "
        "each have one; pass ?tenant=<tenant>"
    )
    assert (await detail(api, "quick-wf", "same", tenant="zed"))["output"] == "zed"
    r = await api.patch(
        f"{WF}/quick-wf/instances/same/status",
        params={"tenant": "acme"},
        json={"action": "restart"},
    )
    assert r.status_code == 200
    r = await api.get(f"{WF}/quick-wf/instances/same", params={"tenant": "other"})
    assert r.status_code == 404
    assert r.json()["errors"][0] == {
        "code": 10501,
        "message": "Workflow instance 'same' not found in tenant 'other'.",
    }


async def test_dispatched_params_envelope_is_shown_as_stored(
    api: httpx.AsyncClient, harness: Harness
) -> None:
    quick(harness)
    envelope = {"__dispatcherMetadata": {"tenant": "acme"}, "params": {"n": 1}}
    await harness.binding("quick-wf", scope="acme").create({"id": "d", "params": envelope})
    await harness.idle()
    assert (await detail(api, "quick-wf", "d"))["params"] == envelope
