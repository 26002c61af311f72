"""``dynwf inspect`` and ``dynwf instances``, driven as a user would: the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.client_state import (
    END_MS,
    ROOT,
    DevServer,
    Holder,
    build_template,
    copy_state,
    make_engine,
)


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def dynwf(*args: str, state: Path | None = None, env: dict[str, str] | None = None) -> Run:
    full = {k: v for k, v in os.environ.items() if k != "DYNWF_PERSIST_TO"}
    full.update(COLUMNS="200", **(env or {}))
    where = ["--persist-to", str(state)] if state is not None else []
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", *args, *where],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def one_line_error(run: Run, code: int, *parts: str) -> None:
    assert run.code == code, run
    assert run.out == "", run
    assert run.err.startswith("error: ") and run.err.count("\n") == 1, run.err
    assert "Traceback" not in run.err
    for part in parts:
        assert part in run.err, run.err


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template(tmp_path_factory.mktemp("cli_inspect"))


@pytest.fixture
def state(template: Path, tmp_path: Path) -> Path:
    return copy_state(template, tmp_path)


def table_rows(out: str) -> list[list[str]]:
    """The body rows of the first rich table in ``out``, split on runs of spaces."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"}) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_cli_inspect_lists_instances_as_a_table(state: Path) -> None:
    run = dynwf("inspect", state=state)
    assert run.code == 0, run
    assert run.err == ""
    assert run.out.splitlines()[0] == f"from the journal {state / 'journal.duckdb'}"
    for header in ("ID", "Tenant", "Workflow", "Status", "Created (UTC)", "Steps"):
        assert header in run.out
    assert table_rows(run.out) == [
        ["o-2", "globex", "orders", "waiting", "2027-01-15", "09:00:06", "3"],
        ["shared", "acme", "orders", "waiting", "2027-01-15", "08:00:05", "4"],
        ["shared", "-", "billing", "complete", "2027-01-15", "08:00:04", "1"],
        ["b-2", "globex", "billing", "complete", "2027-01-15", "08:00:03", "1"],
        ["b-1", "acme", "billing", "errored", "2027-01-15", "08:00:02", "1"],
        ["o-1", "acme", "orders", "waiting", "2027-01-15", "08:00:01", "4"],
        ["o-1", "-", "orders", "complete", "2027-01-15", "08:00:00", "4"],
    ]
    assert run.out.rstrip().endswith("7 instances")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            (),
            ["o-2/globex", "shared/acme", "shared/", "b-2/globex", "b-1/acme", "o-1/acme", "o-1/"],
        ),
        (("--workflow", "billing"), ["shared/", "b-2/globex", "b-1/acme"]),
        (("--tenant", "acme"), ["shared/acme", "b-1/acme", "o-1/acme"]),
        (("--tenant", ""), ["shared/", "o-1/"]),
        (("--status", "errored"), ["b-1/acme"]),
        (("-w", "orders", "-s", "waiting", "-n", "2"), ["o-2/globex", "shared/acme"]),
        (("--status", "paused"), []),
    ],
)
def test_cli_inspect_json_list(state: Path, args: tuple[str, ...], expected: list[str]) -> None:
    run = dynwf("inspect", *args, "--json", state=state)
    assert run.code == 0, run
    body = run.json()
    assert list(body) == ["instances"]
    assert [f"{i['id']}/{i['tenant']}" for i in body["instances"]] == expected
    for item in body["instances"]:
        assert list(item) == ["id", "tenant", "workflow", "status", "created", "steps"]


def test_cli_inspect_shows_one_instance_and_its_step_timeline(state: Path) -> None:
    run = dynwf("inspect", "o-1", "--tenant", "", state=state)
    assert run.code == 0, run
    head = dict(line.split(None, 1) for line in run.out.splitlines()[1:11])
    assert head["Instance"].strip() == "o-1"
    assert head["Workflow"].strip() == "orders"
    assert head["Tenant"].strip() == "-"
    assert head["Status"].strip() == "complete"
    assert head["Output"].strip() == '{"by":"ann"}'
    for header in ("Step", "Type", "Attempts", "Duration", "Ran", "Replayed", "Output / error"):
        assert header in run.out
    rows = table_rows(run.out)  # the header block has no rule: this is the step table
    assert rows[0] == ["reserve-1", "step", "1", "0", "ms", "1", "3", '{"sku":"tea"}']
    assert rows[1] == ["flaky-1", "step", "2", "(1", "failed)", "0", "ms", "2", "2", "2"]
    assert rows[2][:3] == ["cool-1", "sleep", "-"]
    assert rows[3][:2] == ["approval-1", "waitForEvent"] and rows[3][-2:] == [
        "approved:",
        '{"by":"ann"}',
    ]


def test_cli_inspect_shows_the_error_of_an_errored_instance(state: Path) -> None:
    run = dynwf("inspect", "b-1", state=state)
    assert run.code == 0, run
    assert "NonRetryableError: card declined" in run.out
    assert "errored" in run.out


def test_cli_inspect_json_detail(state: Path) -> None:
    run = dynwf("inspect", "o-1", "--tenant", "", "--json", state=state)
    assert run.code == 0, run
    d = run.json()
    assert list(d)[:3] == ["id", "workflow", "tenant"]
    assert (d["id"], d["workflow"], d["tenant"], d["status"]) == ("o-1", "orders", "", "complete")
    assert {"params", "queued", "start", "end", "output", "error", "steps", "step_count"} <= set(d)
    assert d["warnings"] == []
    ran = {s["name"]: (s["executions"], s["replays"]) for s in d["steps"]}
    assert ran == {"reserve-1": (1, 3), "flaky-1": (2, 2), "cool-1": (0, 1), "approval-1": (0, 0)}


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (("inspect", "o-1"), ("'o-1' is used in 2 places", "tenant 'acme'", "--tenant ''")),
        (
            ("inspect", "shared"),
            ("workflow 'billing' (no tenant)", "workflow 'orders' tenant 'acme'"),
        ),
        (("instances", "pause", "o-1"), ("'o-1' is used in 2 places",)),
    ],
)
def test_cli_ambiguous_id_is_a_one_line_error(
    state: Path, args: tuple[str, ...], parts: tuple[str, ...]
) -> None:
    one_line_error(dynwf(*args, state=state), 1, *parts)


@pytest.mark.parametrize(
    ("args", "parts"),
    [
        (("inspect", "nope"), ("no instance 'nope' in the journal", "`dynwf inspect` lists")),
        (
            ("inspect", "b-1", "--tenant", "globex"),
            ("no instance 'b-1' (tenant 'globex')", "workflow 'billing' tenant 'acme' has one"),
        ),
        (("instances", "terminate", "nope"), ("no instance 'nope'",)),
        (("inspect", "--workflow", "nope"), ("workflow 'nope'", "billing, orders")),
    ],
)
def test_cli_not_found_is_a_one_line_error(
    state: Path, args: tuple[str, ...], parts: tuple[str, ...]
) -> None:
    one_line_error(dynwf(*args, state=state), 1, *parts)


@pytest.mark.parametrize(
    ("args", "part"),
    [
        (("inspect", "--status", "bogus"), "status 'bogus' is not an instance status"),
        (("inspect", "--limit", "0"), "limit 0 must be a whole number of at least 1"),
        (("inspect", "o-2", "--status", "waiting"), "drop them when you give an ID"),
        (("instances", "send-event", "o-2"), "send-event needs --type"),
        (("instances", "send-event", "o-2", "--type", "x", "--payload", "{nope"), "--payload is"),
        (("instances", "send-event", "o-2", "--type", "bad type!"), "event type 'bad type!'"),
    ],
)
def test_cli_usage_errors_exit_2_in_one_line(state: Path, args: tuple[str, ...], part: str) -> None:
    one_line_error(dynwf(*args, state=state), 2, part)


def test_cli_missing_state_is_a_one_line_error(tmp_path: Path) -> None:
    run = dynwf("inspect", state=tmp_path / "empty")
    one_line_error(run, 1, f"no journal at {tmp_path / 'empty' / 'journal.duckdb'}", "--persist-to")
    assert not (tmp_path / "empty").exists()


def test_cli_persist_to_comes_from_the_environment(state: Path) -> None:
    run = dynwf("inspect", "--json", env={"DYNWF_PERSIST_TO": str(state)})
    assert run.code == 0, run
    assert len(run.json()["instances"]) == 7


def test_cli_pause_then_inspect_shows_paused(state: Path) -> None:
    run = dynwf("instances", "pause", "o-2", state=state)
    assert run.code == 0, run
    assert (
        "paused instance 'o-2' (workflow 'orders', tenant 'globex'); status now paused" in run.out
    )
    shown = dynwf("inspect", "o-2", "--json", state=state)
    assert shown.json()["status"] == "paused"
    listed = dynwf("inspect", "--status", "paused", "--json", state=state)
    assert [i["id"] for i in listed.json()["instances"]] == ["o-2"]
    resumed = dynwf("instances", "resume", "o-2", "--json", state=state)
    assert resumed.json() == {
        "id": "o-2",
        "workflow": "orders",
        "tenant": "globex",
        "action": "resume",
        "status": "queued",
        "previous": "paused",
    }
    assert dynwf("instances", "terminate", "o-2", state=state).code == 0
    again = dynwf("instances", "terminate", "o-2", state=state)
    one_line_error(again, 1, "cannot terminate instance 'o-2' while it is terminated")
    assert dynwf("instances", "restart", "o-2", "--json", state=state).json()["status"] == "queued"


async def test_cli_send_event_is_delivered_by_the_next_engine(state: Path) -> None:
    run = dynwf(
        "instances",
        "send-event",
        "o-1",
        "--tenant",
        "acme",
        "--type",
        "approved",
        "--payload",
        '{"by": "bob"}',
        state=state,
    )
    assert run.code == 0, run
    assert "recorded in the journal" in run.out
    from dynwf.engine import ManualClock

    engine = make_engine(state, ManualClock(start=END_MS))
    await engine.start()
    try:
        await engine.wait_until_idle(timeout=300)
        st = engine.lookup("orders", "acme", "o-1")
        assert (st.status.value, st.output) == ("complete", {"by": "bob"})
    finally:
        await engine.stop()


@pytest.mark.slow
@pytest.mark.parametrize("args", [("inspect",), ("inspect", "o-2"), ("instances", "pause", "o-2")])
def test_cli_journal_held_by_another_process_is_one_line(
    state: Path, args: tuple[str, ...]
) -> None:
    holder = Holder(state / "journal.duckdb", "write")
    try:
        run = dynwf(*args, state=state)
    finally:
        holder.stop()
    one_line_error(
        run,
        1,
        f"the journal {state / 'journal.duckdb'} is in use by PID {holder.pid}",
        "dev.json",
    )
    assert "IO Error" not in run.err and "lock" not in run.err.lower()


@pytest.mark.slow
def test_cli_goes_through_a_running_dev_server(state: Path) -> None:
    from_journal = dynwf("inspect", "--json", state=state).json()
    detail = dynwf("inspect", "b-1", "--json", state=state).json()
    server = DevServer(state)
    try:
        listed = dynwf("inspect", state=state)
        assert listed.code == 0, listed
        assert listed.out.splitlines()[0] == f"via `dynwf dev` at {server.url}"
        assert dynwf("inspect", "--json", state=state).json() == from_journal
        assert dynwf("inspect", "b-1", "--json", state=state).json() == detail
        one_line_error(
            dynwf("inspect", "o-1", state=state), 1, f"on the dev server at {server.url}"
        )
        paused = dynwf("instances", "pause", "o-2", state=state)
        assert paused.code == 0, paused
        assert "via `dynwf dev`" in paused.out and "status now paused" in paused.out
    finally:
        out = server.stop()
    assert not (state / "dev.json").exists(), out
    after = dynwf("inspect", "o-2", "--json", state=state)
    assert after.json()["status"] == "paused"


def test_cli_ignores_a_stale_dev_json(state: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (state / "dev.json").write_text(
        json.dumps({"pid": int(gone.stdout), "url": "http://127.0.0.1:9"})
    )
    run = dynwf("inspect", state=state)
    assert run.code == 0, run
    assert run.out.startswith("from the journal")


@pytest.mark.parametrize(
    "args",
    [
        ("inspect",),
        ("instances",),
        ("instances", "pause"),
        ("instances", "resume"),
        ("instances", "terminate"),
        ("instances", "restart"),
        ("instances", "send-event"),
    ],
)
def test_cli_help_has_examples(args: tuple[str, ...]) -> None:
    run = dynwf(*args, "--help")
    assert run.code == 0, run
    assert "--persist-to" in run.out or args == ("instances",)
    if args != ("instances",):
        assert "Examples:" in run.out and f"dynwf {' '.join(args)}" in run.out
        assert "With --json" in run.out and "Exit status" in run.out
