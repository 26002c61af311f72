"""Tenant "payments": validate, charge through a flaky gateway with retries, issue a receipt.

  POST /payments/charges        {"amount": 25, "currency": "EUR", "id"?: "ch-1", "gateway_failures"?: 2}
  GET  /payments/charges/<id>   the instance's status and output
"""

import uuid

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc
from workers.workflows import NonRetryableError

import gateway

CURRENCIES = ("EUR", "GBP", "USD")


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        order = event["payload"]  # the event is a plain dict

        @step.do()
        async def validate():
            if order.get("currency") not in CURRENCIES:
                # No retry can fix bad input: stop now, and the instance ends errored.
                raise NonRetryableError(f"unsupported currency {order.get('currency')!r}")
            if not isinstance(order.get("amount"), (int, float)) or order["amount"] <= 0:
                raise NonRetryableError(f"amount must be a positive number, got {order.get('amount')!r}")
            return {"amount": order["amount"], "currency": order["currency"]}

        # Up to 4 retries (5 attempts), waiting 2 s, 4 s, 8 s, 16 s between them; each
        # attempt may take 30 s. Every wait hibernates, and completed steps replay.
        @step.do(config={"retries": {"limit": 4, "delay": "2 seconds", "backoff": "exponential"},
                         "timeout": "30 seconds"})
        async def charge(validate, ctx):
            failures = order.get("gateway_failures", 2)
            result = gateway.charge(validate["amount"], validate["currency"],
                                    attempt=ctx["attempt"], failures=failures)
            return {**result, "attempts": ctx["attempt"]}

        @step.do()
        async def receipt(charge):
            return {"receipt": f"R-{charge['charge_id']}", "tenant": self.env.TENANT_ID, **charge}

        return await receipt()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        # The dispatcher forwards /payments/... unchanged: drop the tenant segment.
        path = request.url.split("://", 1)[-1].split("?", 1)[0]
        route = [part for part in path.split("/")[2:] if part]
        match request.method, route:
            case "POST", ["charges"]:
                body = await request.json() or {}
                # The tenant picks the id, so it never reads it back from the handle.
                charge_id = body.get("id") or f"ch-{uuid.uuid4().hex[:12]}"
                params = {k: v for k, v in body.items() if k != "id"}
                await self.env.WORKFLOWS.create({"id": charge_id, "params": params})
                return Response.json({"id": charge_id}, status=201)
            case "GET", ["charges", instance_id]:
                try:
                    instance = await self.env.WORKFLOWS.get(instance_id)
                except Exception:  # "not found", including another tenant's instance ids
                    return Response.json({"error": f"no charge {instance_id!r}"}, status=404)
                # The instance is a dict of an id and JS functions; python_from_rpc makes
                # the JS object status() gives a dict.
                status = python_from_rpc(await instance["status"]())
                return Response.json({"id": instance_id, **status})
        return Response.json({"routes": ["POST /payments/charges", "GET /payments/charges/<id>"]},
                             status=404)
