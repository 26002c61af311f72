"""``:during`` crashes land during the step: its callback began in the killed engine's isolate.

The tenant's steps append "<step> <attempt> <engine pid>" to a file before their first
suspension point (some never suspend at all), so what really ran is counted outside
the engine, and the pid says under which engine process it ran.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dynwf.testing import ProjectHarness, introspect_workflow_instance

FIXTURES = Path(__file__).parent / "fixtures"
PLATFORM, TENANTS = FIXTURES / "project_two_tenants", FIXTURES / "project_run" / "tenants"
STEPS = ["s1", "s2", "s3", "s4"]
pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PLATFORM, root, ignore=shutil.ignore_patterns("tenants", ".dynwf"))
    shutil.copytree(TENANTS, root / "tenants")
    return root


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def run_json(project: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", "run", "--json", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("step", STEPS)
def test_run_crash_during_kills_after_the_callback_began(
    counter_dir: Path, project: Path, step: str
) -> None:
    log = counter_dir / "ran.log"
    report = run_json(
        project,
        "--tenant", "appender", "--params", json.dumps({"log": str(log)}),
        "--crash-at", f"{step}:during", "--skip-retry-delays",
    )  # fmt: skip
    assert report["status"] == "complete" and report["output"] == {"last": 4}
    (crash,) = report["markers"]
    ran = lines(log)
    counts = Counter(name for name, _, _ in ran)
    # the crashed step's callback began twice: in the killed engine's isolate, then again
    assert counts == Counter({s: 2 if s == step else 1 for s in STEPS})
    first, again = [line for line in ran if line[0] == step]
    assert first[1:] == ["1", str(crash["pid"])]
    assert again[1] == "2" and again[2] != str(crash["pid"])
    # the report counts the callbacks that began, as the file does
    assert {s["name"]: s["executions"] for s in report["steps"]} == {
        f"{s}-1": n for s, n in counts.items()
    }
    crashed = next(s for s in report["steps"] if s["name"] == f"{step}-1")
    assert crashed["attempt_errors"] == [
        "WorkflowInternalError: Attempt failed due to internal workflows error"
    ]
    assert crashed["unreported"] == 0


APPENDER = (TENANTS / "appender" / "worker.py").read_text()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ProjectHarness]:
    root = tmp_path / "platform"
    shutil.copytree(PLATFORM, root)
    (root / "tenants" / "appender").mkdir()
    (root / "tenants" / "appender" / "worker.py").write_text(APPENDER)
    harness = ProjectHarness(root, tmp_path / "state", isolation="process")
    await harness.start()
    yield harness
    await harness.stop()


@pytest.mark.parametrize("step", ["s1", "s3"])
async def test_crash_at_during_in_the_test_api_lands_after_the_callback_began(
    counter_dir: Path, h: ProjectHarness, step: str
) -> None:
    log = counter_dir / "ran.log"
    b = h.tenant("appender")
    inst = await introspect_workflow_instance(b, "c")
    await inst.modify(lambda m: (m.disable_retry_delays(), m.crash_at({"name": step}, "during")))
    await b.create({"id": "c", "params": {"log": str(log)}})
    await inst.wait_for_status("complete")
    assert h.engine.crashes == 1
    counts = Counter(name for name, _, _ in lines(log))
    assert counts == Counter({s: 2 if s == step else 1 for s in STEPS})
    st = h.engine.lookup("dynamic-workflow", '{"tenantId":"appender"}', "c")
    attempts = st.steps[f"do:{step}#1"].attempts
    assert [a.ok for a in attempts] == [False, True]
    assert attempts[0].error is not None and attempts[0].error["name"] == "WorkflowInternalError"
    assert {s: st.steps[f"do:{s}#1"].executions for s in STEPS} == dict(counts)
