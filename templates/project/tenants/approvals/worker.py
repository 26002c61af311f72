"""Tenant "approvals": an expense waits out a cooling-off period, then for a manager.

  POST /approvals/expenses                 {"amount": 120, "by": "ann", "id"?: "exp-1"}
  GET  /approvals/expenses/<id>            the instance's status and output
  POST /approvals/expenses/<id>/decision   {"approved": true, "by": "max"}
"""

import uuid

from js import Object
from pyodide.ffi import to_js
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        expense = event["payload"]  # the event is a plain dict

        @step.do()
        async def submit():
            return {"amount": expense["amount"], "by": expense["by"], "tenant": self.env.TENANT_ID}

        await submit()

        # Sleeping hibernates: run() is dropped, and after the hour it runs again from
        # the top, where submit() returns its journaled result without running.
        await step.sleep("cooling-off", "1 hour")

        # Hibernates again until POST .../decision sends a "decision" event. What arrives
        # is a JS object {payload, timestamp, type}: python_from_rpc makes it a dict.
        waited = await step.wait_for_event("manager decision", "decision", timeout="7 days")
        decision = python_from_rpc(waited)

        @step.do()
        async def record(submit):  # a parameter named after a step receives its result
            verdict = "approved" if decision["payload"].get("approved") else "rejected"
            return {**submit, "status": verdict, "decided_by": decision["payload"].get("by")}

        return await record()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        # The dispatcher forwards /approvals/... unchanged: drop the tenant segment.
        path = request.url.split("://", 1)[-1].split("?", 1)[0]
        route = [part for part in path.split("/")[2:] if part]
        match request.method, route:
            case "POST", ["expenses"]:
                body = await request.json() or {}
                if not isinstance(body.get("amount"), (int, float)) or not body.get("by"):
                    return Response.json({"error": 'send {"amount": number, "by": name}'}, status=400)
                # The tenant picks the id, so it never reads it back from the handle.
                expense_id = body.get("id") or f"exp-{uuid.uuid4().hex[:12]}"
                params = {"amount": body["amount"], "by": body["by"]}
                await self.env.WORKFLOWS.create({"id": expense_id, "params": params})
                return Response.json({"id": expense_id}, status=201)
            case "GET", ["expenses", instance_id]:
                instance = await _find(self.env, instance_id)
                if instance is None:
                    return Response.json({"error": f"no expense {instance_id!r}"}, status=404)
                # The instance is a dict {id, status, sendEvent, ...} of JS functions,
                # whose results are JS objects: python_from_rpc makes them dicts.
                status = python_from_rpc(await instance["status"]())
                return Response.json({"id": instance_id, **status})
            case "POST", ["expenses", instance_id, "decision"]:
                instance = await _find(self.env, instance_id)
                if instance is None:
                    return Response.json({"error": f"no expense {instance_id!r}"}, status=404)
                body = await request.json() or {}
                payload = {"approved": bool(body.get("approved")), "by": body.get("by")}
                event = {"type": "decision", "payload": payload}  # a JS object, not a dict:
                await instance["sendEvent"](to_js(event, dict_converter=Object.fromEntries))
                return Response.json({"id": instance_id, "sent": payload})
        return Response.json(
            {"routes": ["POST /approvals/expenses", "GET /approvals/expenses/<id>",
                        "POST /approvals/expenses/<id>/decision"]},
            status=404,
        )


async def _find(env, instance_id):
    try:
        return await env.WORKFLOWS.get(instance_id)
    except Exception:  # "not found", including another tenant's instance ids
        return None
