"""``dynwf dev`` as a user runs it: a real subprocess on a free port, real HTTP, real SIGINT."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = pytest.mark.slow

NAP = '''
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do()
        async def before():
            return "dozing"

        first = await before()
        await step.sleep("nap", "1 day")

        @step.do()
        async def after(before):
            return before + ", awake"

        return {"text": await after(), "first": first}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        body = await request.json()
        inst = await self.env.WORKFLOWS.create({"id": body.get("id"), "params": body.get("params")})
        return Response.json({"id": inst["id"], "tenant": self.env.TENANT})
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "tenants" / "nap").mkdir()
    (root / "tenants" / "nap" / "worker.py").write_text(NAP)
    return root


class Dev:
    """A `dynwf dev` subprocess; its stderr goes to a file we can read while it runs."""

    def __init__(self, project: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = project / f"dev-{self.port}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dynwf", "dev", "--port", str(self.port), *args],
                cwd=project,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + 300  # a hang guard: an interpreter start on a busy machine
        while "serving" not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=300)


@pytest.fixture
def running() -> Iterator[list[Dev]]:
    devs: list[Dev] = []
    yield devs
    for dev in devs:
        if dev.proc.poll() is None:
            dev.proc.kill()
            dev.proc.wait()


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynwf", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )


def inspect_json(project: Path, *args: str) -> Any:
    done = cli(project, "inspect", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_for(project: Path, id: str, status: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        detail: dict[str, Any] = inspect_json(project, id)
        if detail["status"] == status or time.monotonic() > deadline:
            return detail
        time.sleep(0.2)


def test_dev_serves_two_tenants_while_inspect_reads_it(project: Path, running: list[Dev]) -> None:
    dev = Dev(project, "--skip-sleeps")
    running.append(dev)
    a = httpx.post(f"{dev.url}/acme/start", json={"id": "same", "params": {"name": "ada"}})
    g = httpx.post(f"{dev.url}/globex/start", json={"id": "same", "params": {"name": "grace"}})
    assert a.status_code == 200 and a.json() == {"id": "same", "tenant": "acme"}
    assert g.status_code == 200 and g.json() == {"id": "same", "tenant": "globex"}
    assert httpx.get(f"{dev.url}/nobody/start").status_code == 404

    listed = inspect_json(project)["instances"]
    assert {(i["id"], i["tenant"]) for i in listed} == {
        ("same", '{"tenantId":"acme"}'),
        ("same", '{"tenantId":"globex"}'),
    }
    deadline = time.monotonic() + 300
    while True:
        a_detail = inspect_json(project, "same", "--tenant", "acme")  # a bare tenant id
        g_detail = inspect_json(project, "same", "--tenant", '{"tenantId":"globex"}')
        if {a_detail["status"], g_detail["status"]} == {"complete"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert a_detail["output"] == {"tenant": "acme", "text": "HELLO ADA FROM ACME"}
    assert g_detail["output"] == {"tenant": "globex", "text": "greetings grace, globex here", "n": 5}
    only_acme = inspect_json(project, "--tenant", "acme")["instances"]
    assert [(i["id"], i["tenant"]) for i in only_acme] == [("same", '{"tenantId":"acme"}')]
    count = next(s for s in g_detail["steps"] if s["name"] == "count-1")
    assert [x["success"] for x in count["attempts"]] == [False, True]
    # the request and step log, one readable line each
    log = dev.output()
    assert "POST /acme/start 200" in log and "GET /nobody/start 404" in log
    steps = [line.split() for line in log.splitlines() if " step " in line]
    # time, "step", tenant (the bare id for {"tenantId": ...}), instance, step, attempt N, ms, outcome
    assert [w[2:7] for w in steps if w[2] == "globex"] == [
        ["globex", "same", "count", "attempt", "1"],
        ["globex", "same", "count", "attempt", "2"],
    ]
    # the journal has one writer: `dynwf run` on the same state says so, in one line
    blocked = cli(project, "run", "--tenant", "acme", "--params", '{"name": "x"}')
    assert blocked.returncode == 1 and "dynwf dev is serving" in blocked.stderr
    assert len(blocked.stderr.strip().splitlines()) == 1
    assert dev.stop() == 0
    assert "Traceback" not in dev.output() and "stopped" in dev.output()


def test_dev_logs_each_replay_divergence_once(project: Path, running: list[Dev]) -> None:
    shutil.copytree(
        FIXTURE.parent / "project_run" / "tenants" / "dice", project / "tenants" / "dice"
    )
    dev = Dev(project, "--skip-sleeps")
    running.append(dev)
    r = httpx.post(f"{dev.url}/dice/start", json={"id": "d"})
    assert r.status_code == 200, r.text
    done = wait_for(project, "d", "complete", timeout=120)
    assert done["status"] == "complete"
    # dice names its 3 steps anew on every pass: passes 2-4 each diverge once
    assert len(done["warnings"]) == 3
    logged = [line for line in dev.output().splitlines() if "replay diverged" in line]
    assert [line.removeprefix("warning: ") for line in logged] == done["warnings"]
    assert dev.stop() == 0


def test_sigint_during_a_sleep_then_restart_completes(project: Path, running: list[Dev]) -> None:
    dev = Dev(project)
    running.append(dev)
    r = httpx.post(f"{dev.url}/nap/start", json={"id": "n1"})
    assert r.status_code == 200
    assert wait_for(project, "n1", "waiting", timeout=300)["status"] == "waiting"
    assert dev.stop() == 0
    out = dev.output()
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert out.rstrip().splitlines()[-1].startswith("stopped")
    assert not (project / ".dynwf" / "dev.json").exists()
    # read straight from the journal while nothing runs: still waiting, nothing lost
    detail = inspect_json(project, "n1")
    assert detail["status"] == "waiting"
    assert [s["name"] for s in detail["steps"]] == ["before-1", "nap-1"]

    # the day-long nap journaled by the first server ends at once for one that skips sleeps
    again = Dev(project, "--skip-sleeps")
    running.append(again)
    done = wait_for(project, "n1", "complete", timeout=300)
    assert done["status"] == "complete"
    assert done["output"] == {"text": "dozing, awake", "first": "dozing"}
    before = next(s for s in done["steps"] if s["name"] == "before-1")
    assert before["executions"] == 1 and before["replays"] >= 1
    assert again.stop() == 0


def test_port_in_use_bad_config_and_broken_dispatcher_are_one_line(project: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = cli(project, "dev", "--port", str(port))
    assert busy.returncode == 1
    assert f"port {port}" in busy.stderr and "in use" in busy.stderr
    assert len(busy.stderr.strip().splitlines()) == 1

    entry = project / "src" / "entry.py"
    entry.write_text("import no_such_module_here\n" + entry.read_text())
    broken = cli(project, "dev", "--port", str(free_port()))
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert "no_such_module_here" in broken.stderr and "entry.py:1:1" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1

    (project / "wrangler.toml").write_text('name = "x"\n[[workflows]]\nbinding = 3\n')
    bad = cli(project, "dev", "--port", str(free_port()))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "wrangler.toml" in bad.stderr and "dynwf validate" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_dev_help_has_examples() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", "dev", "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0
    assert "Examples" in done.stdout and "--persist-to" in done.stdout
