"""Tenant "__tenant__": its workflow with sleeps skipped, and its HTTP routes."""

from dynwf.testing import introspect_workflow_instance


async def test___tenant_module___workflow_completes(dynwf_project):
    tenant = dynwf_project.tenant("__tenant__")
    instance = await introspect_workflow_instance(tenant, "run-1")
    await instance.modify(lambda m: m.disable_sleeps())

    await tenant.create({"id": "run-1", "params": {"name": "Ada"}})

    await instance.wait_for_status("complete")
    assert await instance.get_output() == {
        "message": "hello Ada from __tenant__",
        "tenant": "__tenant__",
    }


async def test___tenant_module___runs_over_http(dynwf_project):
    created = await dynwf_project.fetch("/__tenant__/runs", method="POST", json={"id": "run-2"})
    assert created.status == 201

    status = await (await dynwf_project.fetch("/__tenant__/runs/run-2")).json_body()
    assert status["id"] == "run-2"
