"""``dynwf run`` through its real entry point: real SIGKILLs, recovery, eviction, hibernation.

Every run here is a `python -m dynwf run ... --json` subprocess whose engine runs in
child processes the supervisor kills with SIGKILL at the crash points.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
# the two-tenant platform's config and dispatcher, with this file's own tenants
PLATFORM, TENANTS = FIXTURES / "project_two_tenants", FIXTURES / "project_run" / "tenants"
CHAIN = ["load", "price", "total", "receipt"]
ITEMS = {"items": ["tea", "milk", "honey"]}
OUTPUT = {"receipt": "3 items, total 36", "total": 36}  # what an uncrashed run returns
pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(PLATFORM, root, ignore=shutil.ignore_patterns("tenants", ".dynwf"))
    shutil.copytree(TENANTS, root / "tenants")
    return root


def dynwf(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynwf", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_json(project: Path, *args: str, code: int = 0) -> dict[str, Any]:
    done = dynwf(project, "run", "--json", *args)
    assert done.returncode == code, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["exit_code"] == code
    return report


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["executions"] for s in report["steps"]}


def test_uncrashed_run_reports_every_step_once(project: Path) -> None:
    baseline = run_json(project, "--tenant", "chain", "--params", json.dumps(ITEMS))
    assert baseline["status"] == "complete"
    assert baseline["output"] == OUTPUT
    assert counts(baseline) == {f"{s}-1": 1 for s in CHAIN}
    assert baseline["processes"] == 1 and baseline["markers"] == []
    assert baseline["tenant"] == {"tenantId": "chain"}


@pytest.mark.parametrize("when", ["before", "during", "after"])
@pytest.mark.parametrize("step", CHAIN)
def test_crash_at_every_step_in_every_mode(
    project: Path, step: str, when: str
) -> None:
    report = run_json(
        project,
        "--tenant", "chain", "--params", json.dumps(ITEMS),
        "--crash-at", f"{step}:{when}", "--skip-retry-delays",
    )
    assert report["status"] == "complete"
    assert report["output"] == OUTPUT
    assert report["processes"] == 2
    assert [(m["kind"], m["step"], m["when"], m["process"]) for m in report["markers"]] == [
        ("crash", step, when, 1)
    ]
    # measured, not inferred: the callback of a step killed before its result was
    # journaled really ran twice; everything else ran exactly once
    expected = {f"{s}-1": 2 if s == step and when != "after" else 1 for s in CHAIN}
    assert counts(report) == expected
    crashed = next(s for s in report["steps"] if s["name"] == f"{step}-1")
    assert crashed["markers"] == [f"crash:{when} (process 1)"]
    assert crashed["failed_attempts"] == (0 if when == "after" else 1)
    # the steps journaled before the crash came back from the journal in process 2
    for s in CHAIN[: CHAIN.index(step)]:
        assert next(x for x in report["steps"] if x["name"] == f"{s}-1")["replays"] >= 1


def test_several_crashes_in_one_run_and_inspect_sees_it(project: Path) -> None:
    report = run_json(
        project,
        "--tenant", "chain", "--params", json.dumps(ITEMS), "--id", "order-7",
        "--crash-at", "price:during", "--crash-at", "total", "--crash-at", "receipt#1:before",
        "--skip-retry-delays",
    )
    assert report["processes"] == 4 and report["instance"] == "order-7"
    assert counts(report) == {"load-1": 1, "price-1": 2, "total-1": 1, "receipt-1": 2}
    assert report["output"] == OUTPUT
    seen = dynwf(project, "inspect", "order-7", "--json")
    assert seen.returncode == 0, seen.stderr
    detail = json.loads(seen.stdout)
    assert detail["status"] == "complete" and detail["tenant"] == '{"tenantId":"chain"}'
    assert {s["name"]: s["executions"] for s in detail["steps"]} == counts(report)
    listed = dynwf(project, "inspect", "--tenant", "chain", "--json")  # from the journal
    assert [i["id"] for i in json.loads(listed.stdout)["instances"]] == ["order-7"]
    bare = dynwf(project, "inspect", "order-7", "--tenant", "chain", "--json")
    assert json.loads(bare.stdout)["tenant"] == '{"tenantId":"chain"}'
    assert dynwf(project, "inspect", "order-7", "--tenant", "other").returncode == 1
    again = dynwf(project, "run", "--tenant", "chain", "--id", "order-7")
    assert again.returncode == 1 and "order-7" in again.stderr and "Traceback" not in again.stderr


def test_evict_at_replays_in_a_fresh_isolate(project: Path) -> None:
    report = run_json(
        project, "--tenant", "chain", "--params", json.dumps(ITEMS), "--evict-at", "price"
    )
    assert report["output"] == OUTPUT
    assert [(m["kind"], m["step"], m["workers"]) for m in report["markers"]] == [
        ("evict", "price", ["chain"])
    ]
    assert counts(report) == {f"{s}-1": 1 for s in CHAIN}
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["load-1"]["replays"] >= 1 and steps["price-1"]["replays"] >= 1
    assert steps["price-1"]["markers"] == ["evict (process 1)"]


def test_hibernate_every_step_exposes_state_outside_steps(project: Path) -> None:
    plain = run_json(project, "--tenant", "counter")
    assert plain["output"] == {"runs": 1, "receipt": "billed 10"}
    assert plain["warnings"] == []
    hib = run_json(project, "--tenant", "counter", "--hibernate-every-step", code=1)
    assert hib["status"] == "complete"  # but the replay diverged: exit status 1
    assert hib["output"] != plain["output"]
    assert hib["output"]["runs"] > 1
    # welcome is skipped by every pass after the first, and reported once
    assert len(hib["warnings"]) == 1 and "do:welcome#1" in hib["warnings"][0]
    assert "not requested" in hib["warnings"][0]


def test_divergence_is_reported_once_per_step_and_exits_1(project: Path) -> None:
    # dice names its 3 steps anew on every pass (a random id); 3 sleeps make 4 passes
    done = dynwf(project, "run", "--tenant", "dice", "--skip-sleeps", "--id", "d1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "status: complete" in done.stdout
    lines = (done.stdout + done.stderr).splitlines()
    divergences = [line for line in lines if "replay diverged" in line]
    # passes 2, 3 and 4 each skip the rolls the pass before ran: one line each
    assert len(divergences) == 3, done.stdout + done.stderr
    assert all(line.startswith("divergence: ") for line in divergences)
    assert "--allow-divergence" in done.stderr
    skipped = [
        key
        for line in divergences
        for key in re.search(r"journaled step\(s\) (.*) were not requested", line)[1].split(", ")
    ]
    detail = json.loads(dynwf(project, "inspect", "d1", "--json").stdout)
    rolls = [f"do:{s['name'][:-2]}#1" for s in detail["steps"] if s["name"].startswith("roll ")]
    # passes 1-4 ran 1, 2, 3 and 3 rolls; each one a later pass skipped is named once
    assert len(rolls) == 9
    assert sorted(skipped) == sorted(rolls[:6])

    allowed = run_json(project, "--tenant", "dice", "--skip-sleeps", "--allow-divergence")
    assert allowed["status"] == "complete" and len(allowed["warnings"]) == 3


def test_exit_codes_errored_and_waiting(project: Path) -> None:
    failed = run_json(project, "--tenant", "failing", code=1)
    assert failed["status"] == "errored"
    assert failed["error"] == {"name": "NonRetryableError", "message": "card declined"}
    sleeping = run_json(project, "--tenant", "approval", code=3)
    assert sleeping["waiting"]["kind"] == "sleep" and sleeping["waiting"]["step"] == "settle"
    waiting = run_json(project, "--tenant", "approval", "--skip-sleeps", code=3)
    assert waiting["waiting"] == {
        "kind": "event",
        "step": "approval",
        "type": "approved",
        "deadline": waiting["waiting"]["deadline"],
    }


def test_human_report(project: Path) -> None:
    done = dynwf(
        project, "run", "--tenant", "chain", "--params", json.dumps(ITEMS),
        "--crash-at", "total:during", "--skip-retry-delays",
    )
    assert done.returncode == 0, done.stderr
    assert "engine killed at total#1:during" in done.stderr
    assert "engine processes: 2" in done.stdout and "crashes: 1" in done.stdout
    assert "status: complete" in done.stdout and '"total": 36' in done.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--crash-at", "#2"], "no step name"),
        (["--evict-at", "load:before"], "--crash-at only"),
        (["--params", "{bad"], "--params is not JSON"),
        (["--workflow", "nope"], "no such workflow"),
        (["--max-wait", "soon"], "soon"),
    ],
)
def test_usage_errors_exit_2(project: Path, args: list[str], needle: str) -> None:
    done = dynwf(project, "run", "--tenant", "chain", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert needle in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unreached_point_is_reported(project: Path) -> None:
    report = run_json(
        project, "--tenant", "chain", "--params", json.dumps(ITEMS), "--crash-at", "lod"
    )
    assert report["unreached"] == ["lod#1:after"] and report["processes"] == 1


def test_no_config_is_one_line(tmp_path: Path) -> None:
    done = dynwf(tmp_path, "run", "--tenant", "x")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "wrangler" in done.stderr


def test_help_shows_the_crash_point_syntax_and_exit_codes(tmp_path: Path) -> None:
    done = dynwf(tmp_path, "run", "--help")
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "STEP[#N][:before|:after|:during]" in text
    assert "3 waiting" in text and "Examples" in text
