"""The approvals tenant: sleeps skipped, the manager's decision mocked or sent for real.

`dynwf_project` (from dynwf's pytest plugin) is this project on a fresh engine and
journal per test; `.tenant(id)` is the WORKFLOWS binding the dispatcher gives that tenant.
"""

from dynwf.testing import introspect_workflow, introspect_workflow_instance

EXPENSE = {"amount": 120, "by": "ann"}
APPROVED = {"type": "decision", "payload": {"approved": True, "by": "max"}}


async def test_approved_expense_completes(dynwf_project):
    approvals = dynwf_project.tenant("approvals")
    instance = await introspect_workflow_instance(approvals, "exp-1")
    await instance.modify(lambda m: (m.disable_sleeps(), m.mock_event(APPROVED)))

    await approvals.create({"id": "exp-1", "params": EXPENSE})

    await instance.wait_for_status("complete")
    assert await instance.get_output() == {
        "amount": 120,
        "by": "ann",
        "tenant": "approvals",
        "status": "approved",
        "decided_by": "max",
    }


async def test_expense_waits_for_a_real_decision(dynwf_project):
    approvals = dynwf_project.tenant("approvals")
    instance = await introspect_workflow_instance(approvals, "exp-2")
    await instance.modify(lambda m: m.disable_sleeps())
    expense = await approvals.create({"id": "exp-2", "params": EXPENSE})

    assert (await instance.wait_for_step_result({"name": "submit"}))["amount"] == 120
    await instance.wait_for_status("waiting")  # hibernated until the event arrives
    await expense.send_event({"type": "decision", "payload": {"approved": False, "by": "max"}})

    await instance.wait_for_status("complete")
    assert (await instance.get_output())["status"] == "rejected"


async def test_expense_survives_hibernation_after_every_step(dynwf_project):
    # On Cloudflare, run() is dropped at every wait and replayed from the top. Here
    # every step ends the pass, so state kept outside steps would show up as a bug.
    approvals = dynwf_project.tenant("approvals")
    instance = await introspect_workflow_instance(approvals, "exp-3")
    await instance.modify(
        lambda m: (m.disable_sleeps(), m.mock_event(APPROVED), m.hibernate_every_step())
    )

    await approvals.create({"id": "exp-3", "params": EXPENSE})

    await instance.wait_for_status("complete")
    assert (await instance.get_output())["status"] == "approved"


async def test_every_expense_of_a_batch_completes(dynwf_project):
    approvals = dynwf_project.tenant("approvals")
    workflow = await introspect_workflow(approvals)  # applies to every new instance
    await workflow.modify(
        lambda m: (m.disable_sleeps(), m.mock_event(APPROVED), m.mock_event(APPROVED))
    )

    await approvals.create_batch([{"id": "a", "params": EXPENSE}, {"id": "b", "params": EXPENSE}])

    instances = workflow.get_instances()
    assert sorted(i.id for i in instances) == ["a", "b"]
    for instance in instances:
        await instance.wait_for_status("complete")
