"""An example tenant workflow, written exactly as it would run on Cloudflare's Python Workers."""

from workers import WorkflowEntrypoint
from workers.workflows import NonRetryableError


class OrderWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        order = event.payload

        @step.do(config={"retries": {"limit": 3, "delay": "2 seconds", "backoff": "exponential"}})
        async def reserve(ctx):
            if ctx["attempt"] < 2:  # the warehouse API is flaky the first time
                raise ConnectionError("warehouse timed out")
            return {"sku": order["sku"], "reserved": order["qty"]}

        @step.do()
        async def charge(reserve):
            if order["qty"] <= 0:
                raise NonRetryableError("nothing to charge")
            return {"charged": reserve["reserved"] * 12.5}

        receipt = await charge()
        await step.sleep("cool-off period", "1 day")
        approval = await step.wait_for_event("manager approval", "approved", timeout="3 days")
        return {"receipt": receipt, "approved_by": approval["payload"]["by"]}
