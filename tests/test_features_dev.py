"""The late-2026 Workflows features in a real ``dynwf dev``: a tenant's code calls them
through its binding (in an isolate), the explorer API serves them over HTTP, and the
CLI drives them, all against one dev server."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_cli_dev import FIXTURE, Dev, cli

pytestmark = pytest.mark.slow

OPS = """
import asyncio

from js import Object
from pyodide.ffi import to_js
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        p = event["payload"] or {}
        if p.get("slow"):

            @step.do("slow")
            async def slow():
                await asyncio.sleep(p["slow"] / 1000)
                return "slept"

            return await slow()
        if p.get("delay"):
            mode = p["delay"]

            def delay(arg):
                if mode == "raise":
                    raise RuntimeError("boom")
                return 200 if arg["ctx"]["attempt"] == 1 else "nonsense"

            @step.do("flaky", config={"retries": {"limit": 3, "delay": delay}})
            async def flaky(ctx):
                if ctx["attempt"] < 3:
                    raise ValueError("attempt " + str(ctx["attempt"]))
                return ctx["attempt"]

            try:
                return {"flaky": await flaky()}
            except Exception as exc:
                return {"caught": [type(exc).__name__, str(exc)]}

        @step.do("a")
        async def a():
            return "A"

        x = await a()

        @step.do("b")
        async def b():
            return x + "B"

        y = await b()

        @step.do("secret", config={"sensitive": "output"})
        async def secret():
            return "s3cr3t"

        n = len(await secret())
        if p.get("wait"):
            await step.wait_for_event("go", {"type": "go", "timeout": "1 hour"})

        @step.do("c")
        async def c():
            return y + "C"

        return {"out": await c(), "n": n}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        # The portable forms: env.WORKFLOWS is the dispatcher's DynamicWorkflowBinding
        # (create, createBatch, get), whose handles are dicts of an id and JS functions.
        body = await request.json()
        op, arg, wf = body["op"], body.get("arg"), self.env.WORKFLOWS
        try:
            if op == "create":
                result = (await wf.create(arg))["id"]
            elif op == "create_batch":
                result = [i["id"] for i in await wf.createBatch(arg)]
            elif op == "delete_batch":
                result = await wf.deleteBatch(arg)
            elif op == "delete":
                result = await (await wf.get(body["id"]))["delete"]()
            elif op == "restart":
                inst = await wf.get(body["id"])
                if arg is None:
                    result = await inst["restart"]()
                else:
                    result = await inst["restart"](to_js(arg, dict_converter=Object.fromEntries))
            elif op == "status":
                result = python_from_rpc(await (await wf.get(body["id"]))["status"]())
            else:
                return Response.json({"error": "unknown op " + op}, status=400)
        except Exception as exc:
            return Response.json({"error": type(exc).__name__, "message": str(exc)}, status=400)
        return Response.json({"result": result})
"""

WF = "dynamic-workflow"
TENANT = '{"tenantId":"ops"}'


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    root = tmp_path_factory.mktemp("features") / "project"
    shutil.copytree(FIXTURE, root)
    (root / "tenants" / "ops").mkdir()
    (root / "tenants" / "ops" / "worker.py").write_text(OPS)
    toml = root / "wrangler.toml"  # feature 8: one instance of the workflow runs at a time
    toml.write_text(toml.read_text() + "concurrency = { limit = 1 }\n")
    server = Dev(root)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


def project_of(dev: Dev) -> Path:
    return dev.log.parent


def op(dev: Dev, name: str, arg: Any = None, **extra: Any) -> Any:
    r = httpx.post(f"{dev.url}/ops/x", json={"op": name, "arg": arg, **extra}, timeout=300)
    body = r.json()
    if r.status_code != 200:
        return body
    return body["result"]


def api(dev: Dev, method: str, path: str, **kw: Any) -> httpx.Response:
    url = f"{dev.url}/cdn-cgi/explorer/api/workflows/{WF}{path}"
    return httpx.request(method, url, timeout=300, **kw)


def ids(dev: Dev) -> set[str]:
    r = api(dev, "GET", "/instances", params={"tenant": TENANT, "per_page": 100})
    return {i["id"] for i in r.json()["result"]}


def status(dev: Dev, id: str) -> dict[str, Any]:
    r = api(dev, "GET", f"/instances/{id}", params={"tenant": TENANT})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["result"]
    return result


def wait_status(dev: Dev, id: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 300  # a hang guard only
    while True:
        detail = status(dev, id)
        if detail["status"] == want or time.monotonic() > deadline:
            return detail
        time.sleep(0.1)


# -- 4. delete ---------------------------------------------------------------------------
def test_delete_through_explorer_and_cli_not_a_tenants_binding(dev: Dev) -> None:
    made = op(dev, "create_batch", [{"id": f"d{i}"} for i in range(1, 6)])
    assert made == ["d1", "d2", "d3", "d4", "d5"]
    # a tenant's binding is the dynamic_workflows one: no deleteBatch, no handle["delete"]
    # (as on Cloudflare); deleting is the platform's, below
    out = op(dev, "delete_batch", ["d1"])
    assert out["error"] == "AttributeError" and "create, createBatch and get" in out["message"]
    out = op(dev, "delete", id="d2")
    assert out["error"] == "KeyError" and "delete" in out["message"]
    assert ids(dev) >= {"d1", "d2", "d3", "d4", "d5"}  # nothing was deleted
    r = api(dev, "POST", "/instances/batch/delete", json={"instances": ["d1", "zz", "d1"]})
    assert r.json()["result"]["deleted"] == [{"id": "d1"}]
    assert [(e["id"], e["code"]) for e in r.json()["result"]["errors"]] == [
        ("zz", "instance.not_found")
    ]
    r = api(dev, "POST", "/instances/batch/delete", json={"instances": []})
    assert r.status_code == 400 and "1 to 100" in r.text
    r = api(dev, "POST", "/instances/batch/delete", json={"instances": ["d2"]})
    assert r.json()["result"]["deleted"] == [{"id": "d2"}]
    assert ids(dev) >= {"d3", "d4", "d5"} and not ids(dev) & {"d1", "d2"}

    # the explorer's batch route (no ?tenant=: each id is looked up in every tenant)
    r = api(dev, "POST", "/instances/batch/delete", json={"instances": ["d3", "nope"]})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["deleted"] == [{"id": "d3"}]
    assert [e["id"] for e in result["errors"]] == ["nope"]
    for body in ({"ids": ["d4"]}, {"instances": "d4"}, {"instances": [7]}, [1]):
        r = api(dev, "POST", "/instances/batch/delete", json=body)
        assert r.status_code == 400, (body, r.text)
    assert "d4" in ids(dev)  # bad input changed nothing
    r = api(
        dev,
        "POST",
        "/instances/batch/delete",
        params={"tenant": TENANT},
        json={"instances": ["d4"]},
    )
    assert r.json()["result"] == {"deleted": [{"id": "d4"}], "errors": []}

    # the CLI, through the running dev server
    done = cli(project_of(dev), "instances", "delete", "d5", "--tenant", "ops", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "deleted"
    assert json.loads(done.stdout)["action"] == "delete"
    missing = cli(project_of(dev), "instances", "delete", "d5", "--tenant", "ops")
    assert missing.returncode == 1 and "d5" in missing.stderr
    assert not ids(dev) & {"d3", "d4", "d5"}


# -- 7. create_batch forms ---------------------------------------------------------------
def test_create_batch_dict_forms_are_refused_to_a_tenant_as_on_cloudflare(dev: Dev) -> None:
    # dynamic_workflows' createBatch wraps each item of a list in the tenant's envelope;
    # the {count} / {instances} forms are the platform binding's (test_engine_create_batch)
    before = ids(dev)
    for form in ({"count": 2, "params": {"k": 1}}, {"instances": [{"id": "cb1"}]}):
        bad = op(dev, "create_batch", form)
        assert bad["error"] == "TypeError" and "takes a list" in bad["message"], bad
    assert ids(dev) == before
    assert op(dev, "create_batch", [{"id": "cb1", "params": {"k": 1}}]) == ["cb1"]
    assert wait_status(dev, "cb1", "complete")["output"] == {"out": "ABC", "n": 6}
    # the params ride in the tenant's envelope, as for create
    assert status(dev, "cb1")["params"] == {
        "__dispatcherMetadata": {"tenantId": "ops"},
        "params": {"k": 1},
    }


# -- 2. sensitive output -----------------------------------------------------------------
def test_sensitive_step_output_is_redacted_in_every_view(dev: Dev) -> None:
    assert op(dev, "create", {"id": "sens"}) == "sens"
    detail = wait_status(dev, "sens", "complete")
    assert detail["output"] == {"out": "ABC", "n": 6}  # the value flowed on
    secret = next(s for s in detail["steps"] if s["name"] == "secret-1")
    assert secret["output"] == "[REDACTED]" and secret["config"]["sensitive"] == "output"
    project = project_of(dev)
    seen = cli(project, "inspect", "sens", "--tenant", "ops", "--json")
    assert seen.returncode == 0, seen.stderr
    assert "s3cr3t" not in seen.stdout and "[REDACTED]" in seen.stdout
    shown = cli(project, "inspect", "sens", "--tenant", "ops")
    assert shown.returncode == 0, shown.stderr
    assert "s3cr3t" not in shown.stdout
    assert "s3cr3t" not in dev.output()


# -- 1. restart from a step ---------------------------------------------------------------
def executions(detail: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["executions"] for s in detail["steps"]}


def test_restart_from_through_tenant_binding_explorer_and_cli(dev: Dev) -> None:
    assert op(dev, "create", {"id": "rf"}) == "rf"
    first = wait_status(dev, "rf", "complete")
    assert executions(first) == {"a-1": 1, "b-1": 1, "secret-1": 1, "c-1": 1}

    # the tenant's binding, in its isolate
    assert op(dev, "restart", {"from": {"name": "b"}}, id="rf") is None
    again = wait_status(dev, "rf", "complete")
    assert executions(again) == {"a-1": 1, "b-1": 1, "secret-1": 1, "c-1": 1}
    assert again["steps"][0]["replays"] >= 1  # "a" was kept, and replayed
    bad = op(dev, "restart", {"from": {"name": "zz"}}, id="rf")
    assert bad["error"] == "ValidationError" and "'zz'" in bad["message"]

    # the explorer API: PATCH status with "from"
    patch = "/instances/rf/status"
    r = api(dev, "PATCH", patch, json={"action": "restart", "from": {"name": "c"}})
    assert r.status_code == 200, r.text
    assert wait_status(dev, "rf", "complete")["output"] == {"out": "ABC", "n": 6}
    r = api(dev, "PATCH", patch, json={"action": "restart", "from": {"name": "nope"}})
    assert r.status_code == 400 and "'nope'" in r.json()["errors"][0]["message"]
    assert status(dev, "rf")["status"] == "complete"  # bad input changed nothing

    # the CLI
    project = project_of(dev)
    done = cli(project, "instances", "restart", "rf", "-t", "ops", "--from", "secret#1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["action"] == "restart"
    assert wait_status(dev, "rf", "complete")["output"] == {"out": "ABC", "n": 6}
    unknown = cli(project, "instances", "restart", "rf", "-t", "ops", "--from", "zz#2")
    assert unknown.returncode == 2 and "'zz' (call 2)" in unknown.stderr
    typo = cli(project, "instances", "restart", "rf", "-t", "ops", "--from-type", "do")
    assert typo.returncode == 2 and "--from STEP" in typo.stderr


# -- 3. callable retries.delay ------------------------------------------------------------
def test_callable_retry_delay_runs_in_the_tenants_isolate(dev: Dev) -> None:
    assert op(dev, "create", {"id": "dl", "params": {"delay": "ok"}}) == "dl"
    detail = wait_status(dev, "dl", "complete")
    # attempt 1's delay was 200 ms; attempt 2's answer was no duration: the step failed
    # there without retry, and run() caught it (as Cloudflare's Python SDK rebuilds it)
    assert detail["output"] == {
        "caught": [
            "JsException",
            'NonRetryableDelayError: The delay function for step "flaky-1" returned an '
            'invalid delay value (expected a number of ms or a duration string like "30 seconds")',
        ]
    }
    flaky = detail["steps"][0]
    assert flaky["config"]["retries"]["delay"] == "[dynamic]"
    assert [a["success"] for a in flaky["attempts"]] == [False, False]

    assert op(dev, "create", {"id": "dr", "params": {"delay": "raise"}}) == "dr"
    detail = wait_status(dev, "dr", "complete")
    assert detail["output"] == {
        "caught": [
            "JsException",
            'NonRetryableDelayError: The delay function for step "flaky-1" threw an error: boom',
        ]
    }
    assert len(detail["steps"][0]["attempts"]) == 1


# -- 5. retention ---------------------------------------------------------------------------
def test_retention_through_tenant_binding_explorer_and_inspect(dev: Dev) -> None:
    made = op(dev, "create", {"id": "keep1h", "retention": {"successRetention": "1 hour"}})
    assert made == "keep1h"
    detail = wait_status(dev, "keep1h", "complete")
    assert detail["expires"] is not None
    project = project_of(dev)
    shown = cli(project, "inspect", "keep1h", "--tenant", "ops")
    assert shown.returncode == 0, shown.stderr
    assert "Expires" in shown.stdout and "retention" in shown.stdout
    # the CLI's create takes a retention too (through the dev server)
    made = cli(
        project,
        *("instances", "create", "-t", "ops", "--id", "clikeep", "--json"),
        *("--retention", '{"successRetention": "2 hours"}'),
    )
    assert made.returncode == 0, made.stderr
    assert wait_status(dev, "clikeep", "complete")["expires"] is not None
    wrong = cli(
        project,
        "instances",
        "create",
        "-t",
        "ops",
        "--id",
        "cliwrong",
        "--retention",
        '{"success": 1}',
    )
    assert wrong.returncode == 2 and "unknown retention key" in wrong.stderr
    bad = op(dev, "create", {"id": "badret", "retention": {"successRetention": "soon"}})
    assert bad["error"] == "InvalidDurationError" and "successRetention" in bad["message"]
    assert not ids(dev) & {"badret", "cliwrong"}

    # the explorer's create takes a retention too; the instance is gone once it is past
    r = api(
        dev,
        "POST",
        "/instances",
        params={"tenant": TENANT},
        json={
            "id": "brief",
            "params": {"__dispatcherMetadata": {"tenantId": "ops"}, "params": {}},
            "retention": {"successRetention": 1500},
        },
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 300  # a hang guard only
    while "brief" in ids(dev) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "brief" not in ids(dev)
    gone = api(dev, "GET", "/instances/brief", params={"tenant": TENANT})
    assert gone.status_code == 404
    assert "keep1h" in ids(dev)


# -- 8. concurrency.limit -----------------------------------------------------------------
def test_concurrency_limit_runs_one_instance_at_a_time(dev: Dev) -> None:
    made = op(dev, "create_batch", [{"id": f"slow{i}", "params": {"slow": 300}} for i in range(3)])
    assert made == ["slow0", "slow1", "slow2"]
    deadline = time.monotonic() + 300  # a hang guard only
    while True:
        counts = api(dev, "GET", "").json()["result"]["instances"]
        assert counts["running"] <= 1, counts  # never two at once
        done = [status(dev, f"slow{i}")["status"] for i in range(3)]
        if done == ["complete"] * 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert done == ["complete"] * 3
    # the step runs of the three never overlap: each began after the one before ended
    spans = sorted(
        (s["start"], s["end"]) for i in range(3) for s in status(dev, f"slow{i}")["steps"]
    )
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(spans))
