"""JournalStateClient: listing, describing and steering straight from the journal file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dynwf.client import (
    AmbiguousInstanceError,
    InstanceSummary,
    JournalInUseError,
    JournalStateClient,
    StateNotFoundError,
    open_state,
)
from dynwf.engine import ManualClock
from dynwf.errors import (
    InstanceNotFoundError,
    InvalidStateError,
    ValidationError,
    WorkflowNotFoundError,
)
from tests.fixtures.client_state import (
    END_MS,
    Holder,
    build_template,
    copy_state,
    make_engine,
)

# (id, tenant, workflow, status, steps), newest first: see tests/fixtures/client_state.py
ALL = [
    ("o-2", "globex", "orders", "waiting", 3),
    ("shared", "acme", "orders", "waiting", 4),
    ("shared", "", "billing", "complete", 1),
    ("b-2", "globex", "billing", "complete", 1),
    ("b-1", "acme", "billing", "errored", 1),
    ("o-1", "acme", "orders", "waiting", 4),
    ("o-1", "", "orders", "complete", 4),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template(tmp_path_factory.mktemp("client_journal"))


@pytest.fixture
def state(template: Path, tmp_path: Path) -> Path:
    return copy_state(template, tmp_path)


@pytest.fixture
def client(state: Path) -> JournalStateClient:
    return JournalStateClient(state / "journal.duckdb")


def rows(found: list[InstanceSummary]) -> list[tuple[str, str, str, str, int]]:
    return [(r.id, r.tenant, r.workflow, r.status, r.steps) for r in found]


async def test_client_journal_lists_newest_first_across_workflows_and_tenants(
    client: JournalStateClient,
) -> None:
    found = await client.list_instances()
    assert rows(found) == ALL
    assert found[0].created == "2027-01-15T09:00:06.000Z"
    assert found[0].as_json() == {
        "id": "o-2",
        "tenant": "globex",
        "workflow": "orders",
        "status": "waiting",
        "created": "2027-01-15T09:00:06.000Z",
        "steps": 3,
    }


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"workflow": "billing"}, [r for r in ALL if r[2] == "billing"]),
        ({"tenant": "acme"}, [r for r in ALL if r[1] == "acme"]),
        ({"tenant": ""}, [r for r in ALL if r[1] == ""]),
        ({"status": "waiting"}, [r for r in ALL if r[3] == "waiting"]),
        ({"workflow": "orders", "tenant": "acme"}, [ALL[1], ALL[5]]),
        ({"limit": 2}, ALL[:2]),
        ({"status": "paused"}, []),
    ],
)
async def test_client_journal_list_filters(
    client: JournalStateClient,
    filters: dict[str, Any],
    expected: list[tuple[str, str, str, str, int]],
) -> None:
    assert rows(await client.list_instances(**filters)) == expected


async def test_client_journal_list_rejects_bad_filters(client: JournalStateClient) -> None:
    with pytest.raises(ValidationError, match="status 'bogus' is not an instance status"):
        await client.list_instances(status="bogus")
    with pytest.raises(ValidationError, match="at least 1"):
        await client.list_instances(limit=0)
    with pytest.raises(WorkflowNotFoundError, match=r"'nope'.*billing, orders"):
        await client.list_instances(workflow="nope")


async def test_client_journal_describe_gives_detail_with_replays(
    client: JournalStateClient,
) -> None:
    d = await client.describe("o-1", tenant="")
    assert list(d)[:3] == ["id", "workflow", "tenant"]
    assert (d["id"], d["workflow"], d["tenant"]) == ("o-1", "orders", "")
    assert d["status"] == "complete" and d["output"] == {"by": "ann"}
    assert d["params"] == {"sku": "tea"}
    assert d["step_count"] == 4 and d["warnings"] == []
    steps = {s["name"]: s for s in d["steps"]}
    assert list(steps) == ["reserve-1", "flaky-1", "cool-1", "approval-1"]
    reserve, flaky = steps["reserve-1"], steps["flaky-1"]
    assert (reserve["type"], reserve["executions"], reserve["output"]) == (
        "step",
        1,
        {"sku": "tea"},
    )
    # reserve ran once and was replayed by every later pass (retry, sleep, event)
    assert reserve["replays"] == 3
    assert flaky["executions"] == 2
    assert [a["success"] for a in flaky["attempts"]] == [False, True]
    assert flaky["attempts"][0]["error"] == {"name": "ValueError", "message": "first attempt fails"}
    assert steps["cool-1"]["type"] == "sleep" and steps["cool-1"]["finished"] is True
    assert steps["approval-1"]["output"]["payload"] == {"by": "ann"}


async def test_client_journal_describe_errored_instance(client: JournalStateClient) -> None:
    d = await client.describe("b-1")
    assert (d["workflow"], d["tenant"], d["status"]) == ("billing", "acme", "errored")
    assert d["error"] == {"message": "card declined", "name": "NonRetryableError"}


async def test_client_journal_ambiguous_id_names_every_place(client: JournalStateClient) -> None:
    with pytest.raises(AmbiguousInstanceError) as err:
        await client.describe("o-1")
    assert err.value.places == [("orders", ""), ("orders", "acme")]
    message = str(err.value)
    assert "workflow 'orders' (no tenant), workflow 'orders' tenant 'acme'" in message
    assert "--tenant ''" in message and "\n" not in message
    with pytest.raises(AmbiguousInstanceError) as err:
        await client.describe("shared")
    assert err.value.places == [("billing", ""), ("orders", "acme")]
    assert (await client.describe("shared", workflow="orders"))["tenant"] == "acme"


async def test_client_journal_not_found_says_where_the_id_is(client: JournalStateClient) -> None:
    with pytest.raises(InstanceNotFoundError, match=r"no instance 'nope' in the journal .*"):
        await client.describe("nope")
    with pytest.raises(
        InstanceNotFoundError,
        match=r"no instance 'b-1' \(tenant 'globex'\).*workflow 'billing' tenant 'acme' has one",
    ):
        await client.describe("b-1", tenant="globex")


async def test_client_journal_steering_records_facts_for_the_next_engine(
    client: JournalStateClient, state: Path
) -> None:
    paused = await client.pause("o-2")
    assert paused.as_json() == {
        "id": "o-2",
        "workflow": "orders",
        "tenant": "globex",
        "action": "pause",
        "status": "paused",
        "previous": "waiting",
    }
    assert (await client.describe("o-2"))["status"] == "paused"
    assert (await client.resume("o-2")).status == "queued"
    assert (await client.terminate("o-2")).status == "terminated"
    with pytest.raises(InvalidStateError, match=r"terminated.*workflow 'orders' tenant 'globex'"):
        await client.terminate("o-2")
    assert (await client.restart("o-2")).status == "queued"
    sent = await client.send_event("o-1", "approved", {"by": "bob"}, tenant="acme")
    assert (sent.action, sent.status) == ("send_event", "queued")
    with pytest.raises(ValidationError, match="event type"):
        await client.send_event("shared", "bad type!", {}, workflow="orders")
    # A real engine opening the journal acts on what was recorded.
    engine = make_engine(state, ManualClock(start=END_MS))
    await engine.start()
    try:
        await engine.wait_until_idle(timeout=300)
    finally:
        await engine.stop()
    done = await client.describe("o-1", tenant="acme")
    assert (done["status"], done["output"]) == ("complete", {"by": "bob"})
    assert (await client.describe("o-2"))["status"] == "waiting"  # restarted, in its sleep again


async def test_client_journal_missing_journal_is_reported_and_never_created(
    tmp_path: Path,
) -> None:
    client = JournalStateClient(tmp_path / "nothing" / "journal.duckdb")
    with pytest.raises(StateNotFoundError, match=r"no journal at .*--persist-to"):
        await client.list_instances()
    with pytest.raises(StateNotFoundError):
        await client.pause("x")
    assert not (tmp_path / "nothing").exists()


async def test_client_journal_reads_beside_another_reader(
    client: JournalStateClient, state: Path
) -> None:
    holder = Holder(state / "journal.duckdb", "read")
    try:
        assert len(await client.list_instances()) == len(ALL)
        assert (await client.describe("o-2"))["status"] == "waiting"
    finally:
        holder.stop()


async def test_client_journal_in_use_by_a_writer_names_its_pid(
    state: Path,
) -> None:
    client = JournalStateClient(state / "journal.duckdb", lock_wait=0.3)
    holder = Holder(state / "journal.duckdb", "write")
    try:
        with pytest.raises(JournalInUseError) as err:
            await client.list_instances()
        assert err.value.pid == holder.pid
        message = str(err.value)
        assert f"is in use by PID {holder.pid}" in message
        assert "dev.json" in message and "\n" not in message
        with pytest.raises(JournalInUseError):
            await client.pause("o-2")
    finally:
        holder.stop()


async def test_client_journal_waits_out_a_short_lock(state: Path) -> None:
    holder = Holder(state / "journal.duckdb", "write", seconds=0.5)
    try:
        client = JournalStateClient(state / "journal.duckdb", lock_wait=300)
        assert (await client.pause("o-2")).status == "paused"
    finally:
        holder.stop()


async def test_client_open_state_uses_the_journal_without_a_live_dev_server(
    state: Path,
) -> None:
    client = await open_state(state)
    assert isinstance(client, JournalStateClient)
    assert client.kind == "journal" and client.location == str(state / "journal.duckdb")
    # a dev.json left behind by a dead process is ignored
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (state / "dev.json").write_text(
        json.dumps({"pid": int(gone.stdout), "url": "http://127.0.0.1:9"})
    )
    assert isinstance(await open_state(state), JournalStateClient)
    (state / "dev.json").write_text("{not json")
    assert isinstance(await open_state(state), JournalStateClient)


async def test_client_journal_delete_forgets_the_instance_for_good(
    client: JournalStateClient,
) -> None:
    done = await client.delete("o-2")
    assert (done.action, done.status, done.previous) == ("delete", "deleted", "waiting")
    assert "o-2" not in [s.id for s in await client.list_instances()]
    with pytest.raises(InstanceNotFoundError):
        await client.delete("o-2")
    with pytest.raises(AmbiguousInstanceError):
        await client.delete("shared")  # two places hold it: nothing is deleted
    assert len([s for s in await client.list_instances() if s.id == "shared"]) == 2
