"""Through the dispatcher over HTTP, as `dynwf dev` serves it."""

from dynwf.testing import introspect_workflow_instance


async def test_expense_approved_over_http(dynwf_project):
    instance = await introspect_workflow_instance(dynwf_project.tenant("approvals"), "exp-http")
    await instance.modify(lambda m: m.disable_sleeps())

    created = await dynwf_project.fetch(
        "/approvals/expenses", method="POST", json={"id": "exp-http", "amount": 80, "by": "ann"}
    )
    assert created.status == 201
    assert await created.json_body() == {"id": "exp-http"}

    decided = await dynwf_project.fetch(
        "/approvals/expenses/exp-http/decision",
        method="POST",
        json={"approved": True, "by": "max"},
    )
    assert decided.status == 200
    await instance.wait_for_status("complete")

    status = await (await dynwf_project.fetch("/approvals/expenses/exp-http")).json_body()
    assert status["status"] == "complete"
    assert status["output"]["decided_by"] == "max"


async def test_root_lists_tenants_and_unknown_tenants_are_404(dynwf_project):
    root = await (await dynwf_project.fetch("/")).json_body()
    assert {"approvals", "payments"} <= set(root["tenants"])
    assert (await dynwf_project.fetch("/nobody/")).status == 404
    assert (await dynwf_project.fetch("/Not_A_Tenant/")).status == 404


async def test_a_tenant_cannot_read_another_tenants_instance(dynwf_project):
    created = await dynwf_project.fetch(
        "/payments/charges", method="POST", json={"id": "ch-http", **{"amount": 5, "currency": "EUR"}}
    )
    assert created.status == 201
    assert (await dynwf_project.fetch("/payments/charges/ch-http")).status == 200
    assert (await dynwf_project.fetch("/approvals/expenses/ch-http")).status == 404
