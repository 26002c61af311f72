"""Tenant "__tenant__": a starting point. Write the workflow in TenantWorkflow.run.

  POST /__tenant__/runs          {"id"?: "run-1", "name"?: "Ada"}
  GET  /__tenant__/runs/<id>     the instance's status and output
"""

import uuid

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        params = event["payload"] or {}  # the event is a plain dict

        @step.do()
        async def greet():
            return f"hello {params.get('name', 'world')} from {self.env.TENANT_ID}"

        await greet()
        await step.sleep("pause", "10 seconds")  # hibernates; greet() replays afterwards

        @step.do()
        async def finish(greet):  # a parameter named after a step receives its result
            return {"message": greet, "tenant": self.env.TENANT_ID}

        return await finish()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        # The dispatcher forwards /__tenant__/... unchanged: drop the tenant segment.
        path = request.url.split("://", 1)[-1].split("?", 1)[0]
        route = [part for part in path.split("/")[2:] if part]
        match request.method, route:
            case "POST", ["runs"]:
                body = await request.json() or {}
                # The tenant picks the id, so it never reads it back from the handle.
                run_id = body.get("id") or f"run-{uuid.uuid4().hex[:12]}"
                params = {k: v for k, v in body.items() if k != "id"}
                await self.env.WORKFLOWS.create({"id": run_id, "params": params})
                return Response.json({"id": run_id}, status=201)
            case "GET", ["runs", instance_id]:
                try:
                    instance = await self.env.WORKFLOWS.get(instance_id)
                except Exception:  # "not found", including another tenant's instance ids
                    return Response.json({"error": f"no run {instance_id!r}"}, status=404)
                # The instance is a dict of an id and JS functions; python_from_rpc makes
                # the JS object status() gives a dict.
                status = python_from_rpc(await instance["status"]())
                return Response.json({"id": instance_id, **status})
        return Response.json({"routes": ["POST /__tenant__/runs", "GET /__tenant__/runs/<id>"]},
                             status=404)
