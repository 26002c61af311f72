"""A step's timeout is the engine's: it fires even when the tenant's code blocks its event loop.

Every tenant here runs in a real isolate process; the steps append to a file, so the
counts are what really ran. The CPU cap is set far above anything these tests wait
for, so only the engine's own deadline can end a spinning attempt.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dynwf.dispatch import IsolateLimits, TenantWorkflowBinding, tenant_binding
from dynwf.engine import TimeControl
from dynwf.project import Project
from dynwf.workers import Request

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = pytest.mark.slow
HANG_GUARD_S = 120  # a generous bound for a busy machine; never a measurement

SPINNER = """
import os
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        log = event["payload"]["log"]

        @step.do(config={{"retries": {{"limit": {limit}, "delay": 0}}, "timeout": 300}})
        {kind} spin(ctx):
            with open(log, "a") as f:
                f.write(f"spin {{ctx['attempt']}} {{os.getpid()}}\\n")
            if ctx["attempt"] <= {spins}:
                while True:
                    pass
            return ctx["attempt"]

        return {{"attempt": await spin()}}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(str(os.getpid()))
"""


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    return root


@pytest.fixture
async def make_project(project_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Project] = []

    async def make(**kwargs: Any) -> Project:
        kwargs.setdefault("limits", IsolateLimits(cpu_ms=600_000))
        kwargs.setdefault("time", TimeControl(skip_retry_delays=True))
        p = Project.load(project_dir, **kwargs)
        await p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.stop()


def add_spinner(root: Path, name: str, *, limit: int, spins: int, kind: str = "async def") -> None:
    (root / "tenants" / name).mkdir()
    (root / "tenants" / name / "worker.py").write_text(
        SPINNER.format(limit=limit, spins=spins, kind=kind)
    )


def binding(p: Project, tenant: str) -> TenantWorkflowBinding:
    return tenant_binding(p.env, {"tenantId": tenant})


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


async def fetch(p: Project, path: str, **kwargs: Any) -> Any:
    return await p.fetch(Request(f"http://localhost/{path}", **kwargs))


@pytest.mark.parametrize("kind", ["async def", "def"])
async def test_step_timeout_fires_while_the_callback_blocks_its_loop(
    counter_dir: Path, make_project: Any, project_dir: Path, kind: str
) -> None:
    add_spinner(project_dir, "spinner", limit=2, spins=1, kind=kind)
    p = await make_project()
    log = counter_dir / "spin.log"
    inst = await binding(p, "spinner").create({"id": "s", "params": {"log": str(log)}})
    await p.engine.wait_until_idle(timeout=HANG_GUARD_S)
    status = await inst.status()
    assert status["status"] == "complete", status
    assert status["output"] == {"attempt": 2}
    st = p.engine.lookup("dynamic-workflow", '{"tenantId":"spinner"}', "s")
    attempts = st.steps["do:spin#1"].attempts
    assert [a.ok for a in attempts] == [False, True]
    assert attempts[0].error == {
        "name": "WorkflowTimeoutError",
        "message": "Execution timed out after 300ms",
    }
    ran = lines(log)
    assert [n for _, n, _ in ran] == ["1", "2"]  # each attempt's callback began once
    assert ran[0][2] != ran[1][2]  # the blocked isolate was replaced by a new process


async def test_step_timeout_retry_policy_applies_to_a_blocked_callback(
    counter_dir: Path, make_project: Any, project_dir: Path
) -> None:
    add_spinner(project_dir, "stuck", limit=1, spins=99)
    p = await make_project()
    log = counter_dir / "stuck.log"
    inst = await binding(p, "stuck").create({"id": "s", "params": {"log": str(log)}})
    await p.engine.wait_until_idle(timeout=HANG_GUARD_S)
    status = await inst.status()
    assert status["status"] == "errored"
    assert status["error"] == {
        "name": "WorkflowTimeoutError",
        "message": "Execution timed out after 300ms",
    }
    st = p.engine.lookup("dynamic-workflow", '{"tenantId":"stuck"}', "s")
    errors = [a.error["name"] for a in st.steps["do:spin#1"].attempts if a.error]
    assert errors == ["WorkflowTimeoutError", "WorkflowTimeoutError"]  # limit 1: 2 attempts
    assert [n for _, n, _ in lines(log)] == ["1", "2"]


async def test_blocked_tenant_does_not_hold_up_other_tenants_or_its_own_next_requests(
    counter_dir: Path, make_project: Any, project_dir: Path
) -> None:
    add_spinner(project_dir, "spinner", limit=2, spins=1)
    p = await make_project()
    log = counter_dir / "spin.log"
    inst = await binding(p, "spinner").create({"id": "s", "params": {"log": str(log)}})
    while not log.exists():  # the callback began: its isolate's event loop is blocked now
        await asyncio.sleep(0.01)
    # another tenant is served, by HTTP and by its workflow, while the spinner spins
    r = await fetch(
        p, "acme/start", method="POST", body=json.dumps({"id": "a", "params": {"name": "ann"}})
    )
    assert r.status == 200, r.body
    other = await binding(p, "acme").get("a")
    for _ in range(HANG_GUARD_S * 100):
        if (await other.status())["status"] == "waiting":  # ran its first step, now sleeps
            break
        await asyncio.sleep(0.01)
    seen = await other.status()
    assert seen["status"] == "waiting", seen
    hello = p.engine.lookup("dynamic-workflow", '{"tenantId":"acme"}', "a").steps["do:hello#1"]
    assert [a.ok for a in hello.attempts] == [True]  # its step ran once, first time, unaffected
    await p.engine.wait_until_idle(timeout=HANG_GUARD_S)
    assert (await inst.status())["output"] == {"attempt": 2}
    # the spinner's HTTP requests go to its fresh isolate, the one that ran attempt 2
    r = await asyncio.wait_for(fetch(p, "spinner/pid"), HANG_GUARD_S)
    assert r.status == 200
    assert r.body.decode() == lines(log)[1][2]
