"""Schedules firing: the scheduler on a manual clock, and a real `dynwf dev` over HTTP and the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dynwf.engine import ManualClock
from dynwf.project import schedule_instance_id
from dynwf.testing import ProjectHarness
from tests.test_cli_dev import Dev, cli, inspect_json, running  # noqa: F401 (running is a fixture)

pytestmark = pytest.mark.slow

CONFIG = """\
name = "scheduled"
main = "src/entry.py"
compatibility_date = "2026-04-01"
compatibility_flags = ["python_workers"]

[[workflows]]
name = "nightly"
binding = "NIGHTLY"
class_name = "Nightly"
schedules = [{crons}]

[[workflows]]
name = "plain"
binding = "PLAIN"
class_name = "Plain"
"""
ENTRY = """\
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class Nightly(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do()
        async def note():
            return event["schedule"]["cron"]

        return {
            "schedule": event.get("schedule"),
            "payload": event["payload"],
            "id": event["instanceId"],
            "noted": await note(),
        }


class Plain(WorkflowEntrypoint):
    async def run(self, event, step):
        return "schedule" in event


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("ok")
"""


def _project(root: Path, *crons: str) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "entry.py").write_text(ENTRY)
    (root / "wrangler.toml").write_text(
        CONFIG.format(crons=", ".join(json.dumps(c) for c in crons))
    )
    return root


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
async def clocked(tmp_path: Path) -> AsyncIterator[tuple[ProjectHarness, ManualClock]]:
    clock = ManualClock(_ms("2026-12-02T10:03:30"))
    harness = ProjectHarness(
        _project(tmp_path / "p", "*/5 * * * *", "0 11 * * *"),
        tmp_path / "state",
        isolation="inline",
        clock=clock,
    )
    await harness.start()
    yield harness, clock
    await harness.stop()


async def _until(check: object, what: str) -> None:
    for _ in range(6000):  # a hang guard, not a timing assertion
        if check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} never happened")


async def test_scheduler_fires_each_cron_at_its_minute_in_utc(
    clocked: tuple[ProjectHarness, ManualClock],
) -> None:
    harness, clock = clocked
    engine = harness.engine
    task = asyncio.create_task(harness.project.scheduler.run())
    try:
        await asyncio.sleep(0.05)
        assert list(engine.all_states()) == []  # nothing fires on start: no catching up
        clock.advance("2 minutes")  # 10:05:30
        first = schedule_instance_id("*/5 * * * *", _ms("2026-12-02T10:05"))
        await _until(lambda: any(s.id == first for s in engine.all_states()), "the 10:05 firing")
        # 11:00:30: a late wake fires each cron once, at its latest time (both at 11:00)
        clock.advance("55 minutes")
        await _until(lambda: len(engine.all_states()) == 3, "the 11:00 firings")
        await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert {s.id for s in engine.all_states()} == {
        first,
        schedule_instance_id("0 11 * * *", _ms("2026-12-02T11:00")),
        schedule_instance_id("*/5 * * * *", _ms("2026-12-02T11:00")),
    }
    st = engine.lookup("nightly", "", first)
    await _until(lambda: st.status.value == "complete", "the 10:05 instance completing")
    assert st.output == {
        "schedule": {"cron": "*/5 * * * *", "scheduledTime": _ms("2026-12-02T10:05")},
        "payload": None,
        "id": first,
        "noted": "*/5 * * * *",
    }


async def test_fire_now_picks_a_schedule_and_refuses_what_is_not_one(
    clocked: tuple[ProjectHarness, ManualClock],
) -> None:
    from dynwf.errors import ValidationError, WorkflowNotFoundError

    harness, clock = clocked
    scheduler = harness.project.scheduler
    st = await scheduler.fire("NIGHTLY")  # by binding; the first schedule
    assert st.schedule == {"cron": "*/5 * * * *", "scheduledTime": clock.now_ms()}
    clock.advance("1 second")
    handle = await harness.trigger_schedule("nightly")  # the test API's way to the same
    done = harness.engine.lookup("nightly", "", handle.id)
    await _until(lambda: done.status.value == "complete", "the fired instance")
    assert (await handle.status())["output"]["schedule"] == {
        "cron": "*/5 * * * *",
        "scheduledTime": clock.now_ms(),
    }
    st = await scheduler.fire("nightly", "0 11 * * *")
    assert st.schedule is not None and st.schedule["cron"] == "0 11 * * *"
    with pytest.raises(ValidationError, match="workflow 'plain' has no schedules; add schedules"):
        await scheduler.fire("plain")
    with pytest.raises(ValidationError, match="has no schedule '1 \\* \\* \\* \\*'; its schedules"):
        await scheduler.fire("nightly", "1 * * * *")
    with pytest.raises(WorkflowNotFoundError, match="no workflow 'nope'"):
        await scheduler.fire("nope")


# -- a real `dynwf dev` ----------------------------------------------------------------------


def test_dev_fires_a_schedule_when_its_minute_comes(
    tmp_path: Path,
    running: list[Dev],  # noqa: F811
) -> None:
    project = _project(tmp_path / "p", "* * * * *")
    dev = Dev(project)
    running.append(dev)
    deadline = time.monotonic() + 300  # the next minute boundary, on a busy machine
    while True:
        listed = inspect_json(project, "--workflow", "nightly")["instances"]
        if listed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert listed, dev.output()
    id = listed[0]["id"]
    while (detail := inspect_json(project, id))["status"] != "complete":
        assert time.monotonic() < deadline, detail
        time.sleep(0.2)
    schedule = detail["output"]["schedule"]
    assert schedule["cron"] == "* * * * *" and schedule["scheduledTime"] % 60_000 == 0
    assert id == schedule_instance_id("* * * * *", schedule["scheduledTime"])
    assert f"schedule '* * * * *' fired: workflow 'nightly' instance '{id}'" in dev.output()
    assert dev.stop() == 0


def test_trigger_schedule_fires_one_now_through_dev(
    tmp_path: Path,
    running: list[Dev],  # noqa: F811
) -> None:
    project = _project(tmp_path / "p", "0 0 1 1 *", "30 4 * * SUN")
    none = cli(project, "instances", "trigger-schedule", "nightly")
    assert none.returncode == 1 and "no running `dynwf dev`" in none.stderr
    dev = Dev(project)
    running.append(dev)

    done = cli(project, "instances", "trigger-schedule", "nightly", "--json")
    assert done.returncode == 0, done.stderr
    fired = json.loads(done.stdout)
    assert fired["workflow"] == "nightly" and fired["cron"] == "0 0 1 1 *"
    assert fired["id"] == schedule_instance_id("0 0 1 1 *", fired["scheduledTime"])
    deadline = time.monotonic() + 300
    while (detail := inspect_json(project, fired["id"]))["status"] != "complete":
        assert time.monotonic() < deadline, detail
        time.sleep(0.2)
    assert detail["output"]["schedule"] == {
        "cron": "0 0 1 1 *",
        "scheduledTime": fired["scheduledTime"],
    }

    other = cli(project, "instances", "trigger-schedule", "NIGHTLY", "--cron", "30 4 * * SUN")
    assert other.returncode == 0, other.stderr
    assert "schedule '30 4 * * SUN' fired: instance 'cron-" in other.stdout

    plain = cli(project, "instances", "trigger-schedule", "plain")
    assert plain.returncode == 2 and "workflow 'plain' has no schedules" in plain.stderr
    wrong = cli(project, "instances", "trigger-schedule", "nightly", "--cron", "* * * * *")
    assert wrong.returncode == 2 and "its schedules: '0 0 1 1 *', '30 4 * * SUN'" in wrong.stderr
    missing = cli(project, "instances", "trigger-schedule", "nope")
    assert missing.returncode == 1 and "no workflow 'nope'" in missing.stderr

    # the route itself: dynwf's own, never the tenant's fetch, localhost only
    route = f"{dev.url}/cdn-cgi/dynwf/schedules/nightly"
    assert httpx.get(route).status_code == 405
    assert httpx.post(route, content=b"not json").status_code == 400
    assert httpx.post(route, headers={"host": "evil.example"}).status_code == 403
    assert httpx.post(f"{dev.url}/cdn-cgi/dynwf/other").status_code == 404
    assert dev.stop() == 0
