"""The payments tenant: retries without waiting, mocked gateway errors, a crash mid-charge."""

from dynwf.testing import introspect_workflow_instance

ORDER = {"amount": 25, "currency": "EUR"}


async def test_flaky_gateway_is_retried_until_it_answers(dynwf_project):
    payments = dynwf_project.tenant("payments")
    instance = await introspect_workflow_instance(payments, "ch-1")
    await instance.modify(lambda m: m.disable_retry_delays())

    await payments.create({"id": "ch-1", "params": {**ORDER, "gateway_failures": 2}})

    await instance.wait_for_status("complete")
    receipt = await instance.get_output()
    assert receipt["attempts"] == 3  # two timeouts, then the charge went through
    assert receipt["receipt"] == f"R-{receipt['charge_id']}"


async def test_gateway_down_for_good_errors_the_instance(dynwf_project):
    payments = dynwf_project.tenant("payments")
    instance = await introspect_workflow_instance(payments, "ch-2")
    down = {"name": "GatewayUnavailable", "message": "gateway is down"}
    await instance.modify(
        lambda m: (m.disable_retry_delays(), m.mock_step_error({"name": "charge"}, down))
    )

    await payments.create({"id": "ch-2", "params": ORDER})

    await instance.wait_for_status("errored")
    assert await instance.get_error() == down


async def test_bad_currency_stops_without_retrying(dynwf_project):
    payments = dynwf_project.tenant("payments")
    instance = await introspect_workflow_instance(payments, "ch-3")

    await payments.create({"id": "ch-3", "params": {"amount": 25, "currency": "XYZ"}})

    # No disable_retry_delays(): a NonRetryableError never waits for a retry.
    await instance.wait_for_status("errored")
    assert await instance.get_error() == {
        "name": "NonRetryableError",
        "message": "unsupported currency 'XYZ'",
    }


async def test_crash_during_charge_recovers_from_the_journal(dynwf_project):
    payments = dynwf_project.tenant("payments")
    instance = await introspect_workflow_instance(payments, "ch-4")
    await instance.modify(
        lambda m: (m.disable_retry_delays(), m.crash_at({"name": "charge"}, "during"))
    )

    await payments.create({"id": "ch-4", "params": {**ORDER, "gateway_failures": 0}})

    await instance.wait_for_status("complete")
    assert dynwf_project.engine.crashes == 1
    # The attempt cut off by the crash counts as failed; the next one succeeds.
    assert (await instance.get_output())["attempts"] == 2
