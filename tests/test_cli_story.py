"""The CLI tells the whole story (issue 13): what `inspect`, `instances`, `run` and the dev
log show a user, driven through the real entry point in subprocesses (and a pty where a
terminal matters) on a two-tenant platform project."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from fcntl import ioctl
from pathlib import Path
from typing import Any

import pytest
import typer.main

from dynwf.dispatch import ENVELOPE_KEY, scope_of
from dynwf.engine import Engine, Workflow

FIXTURES = Path(__file__).parent / "fixtures"
PLATFORM, TENANTS = FIXTURES / "project_two_tenants", FIXTURES / "project_run" / "tenants"
WORKFLOW = "dynamic-workflow"
ITEMS = {"items": ["tea", "milk", "honey"], "note": "x" * 90}  # longer than any old cut
pytestmark = pytest.mark.slow

PRINTER = """
from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        print("tenant says hello from run()")

        @step.do()
        async def shout():
            print("tenant says hello from a step")
            return "done"

        return await shout()
"""
BROKEN = "from workers import WorkflowEntrypoint\n\nclass TenantWorkflow(WorkflowEntrypoint:\n"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def make_project(where: Path) -> Path:
    root = where / "project"
    shutil.copytree(PLATFORM, root, ignore=shutil.ignore_patterns("tenants", ".dynwf"))
    shutil.copytree(TENANTS, root / "tenants")
    (root / "tenants" / "printer").mkdir()
    (root / "tenants" / "printer" / "worker.py").write_text(PRINTER)
    (root / "tenants" / "broken").mkdir()
    (root / "tenants" / "broken" / "worker.py").write_text(BROKEN)
    return root


def dynwf(
    project: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "DYNWF_PERSIST_TO")}
    return subprocess.run(
        [sys.executable, "-m", "dynwf", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**full, **(env or {})},
    )


def ok(done: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout


def in_a_terminal(project: Path, columns: int, *args: str) -> str:
    """What `dynwf ARGS` prints to a terminal ``columns`` wide (a real pty), colours stripped."""
    master, slave = pty.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dynwf", *args],
        cwd=project,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm"},
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120  # a hang guard only
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, b"".join(chunks)
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


async def queue_instance(state: Path, tenant: str, id: str, params: Any) -> None:
    """An unfinished (queued) instance, recorded the way any earlier engine leaves one."""

    class NeverHere:
        async def run(self, event: Any, host: Any) -> Any:
            raise AssertionError("a steering engine runs nothing")

    engine = Engine(state / "journal.duckdb", execute=False)
    engine.register(Workflow(WORKFLOW, "WORKFLOWS", NeverHere()))
    await engine.start()
    try:
        meta = {"tenantId": tenant}
        options = {"id": id, "params": {ENVELOPE_KEY: meta, "params": params}}
        await engine.create(WORKFLOW, scope_of(meta), options)
    finally:
        await engine.stop()


# -- a state with a story: built once, copied per test ----------------------------------
@pytest.fixture(scope="module")
def storied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chain/same complete (long params), approval/same asleep in its 2-hour sleep with an
    event buffered, failing/bad errored, broken/stuck parked (its code does not load)."""
    root = make_project(tmp_path_factory.mktemp("storied"))
    ok(dynwf(root, "run", "-t", "chain", "--id", "same", "--params", json.dumps(ITEMS)))
    ok(dynwf(root, "run", "-t", "approval", "--id", "same", "--max-wait", "1 second"), 3)
    event = ["--type", "approved", "--payload", '{"by": "ann"}']
    ok(dynwf(root, "instances", "send-event", "same", "--tenant", "approval", *event))
    ok(dynwf(root, "run", "-t", "failing", "--id", "bad"), 1)
    ok(dynwf(root, "run", "-t", "broken", "--id", "stuck"), 1)
    return root


@pytest.fixture
def project(storied: Path, tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(storied, root)
    return root


def rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"}) + 1
    body = []
    for line in lines[start:]:
        if not line.strip():
            break
        body.append(line.split())
    return body


# -- inspect -------------------------------------------------------------------------------
def test_inspect_piped_prints_full_width_and_names_tenants_by_id(project: Path) -> None:
    out = ok(dynwf(project, "inspect"))  # no COLUMNS, stdout a pipe: was cut at 80 columns
    listed = {(r[0], r[1]): r[2:4] for r in rows(out)}
    assert listed[("same", "chain")] == [WORKFLOW, "complete"]
    assert listed[("same", "approval")] == [WORKFLOW, "waiting"]
    assert listed[("stuck", "broken")] == [WORKFLOW, "waiting"]
    assert "tenantId" not in out and "…" not in out


def test_inspect_fits_a_narrow_terminal_without_losing_a_column(project: Path) -> None:
    out = in_a_terminal(project, 60, "inspect")
    lines = [line for line in out.splitlines() if line.strip()]
    assert all(len(line.rstrip()) <= 60 for line in lines), out
    for header in ("ID", "Tenant", "Workflow", "Status", "Steps"):
        assert header in out
    assert "approval" in out and "tenantId" not in out
    wide = in_a_terminal(project, 60, "inspect", "--wide")
    assert any(len(line.rstrip()) > 60 for line in wide.splitlines())
    assert any(WORKFLOW in line and "approval" in line for line in wide.splitlines())


def test_inspect_one_instance_shows_params_and_output_in_full(project: Path) -> None:
    out = ok(dynwf(project, "inspect", "same", "-t", "chain"))
    head = dict(line.split(None, 1) for line in out.splitlines()[1:12] if line.strip())
    assert json.loads(head["Params"]) == ITEMS  # the tenant's own, whole, not the envelope
    assert ENVELOPE_KEY not in out
    assert head["Tenant"].strip() == "chain"
    assert json.loads(head["Output"]) == {"receipt": "3 items, total 36", "total": 36}


def test_inspect_shows_the_wake_time_and_a_buffered_event(project: Path) -> None:
    detail = json.loads(ok(dynwf(project, "inspect", "same", "-t", "approval", "--json")))
    sleep = next(s for s in detail["steps"] if s["type"] == "sleep")
    assert detail["events"] == [
        {
            "type": "approved",
            "payload": {"by": "ann"},
            "timestamp": detail["events"][0]["timestamp"],
            "consumed": False,
        }
    ]
    out = ok(dynwf(project, "inspect", "same", "-t", "approval"))
    wake = sleep["wake_at"][:19].replace("T", " ")
    assert f"sleeping in settle-1 until {wake}" in out
    assert re.search(r"Event\s+approved \{\"by\":\"ann\"\} \(sent ", out), out


def test_inspect_shows_each_failed_attempt_with_its_error(project: Path) -> None:
    out = ok(dynwf(project, "inspect", "bad"))
    assert re.search(r"check-1 attempt 1 \(.*\): NonRetryableError: card declined", out), out


def test_inspect_says_parked_when_the_code_does_not_load(project: Path) -> None:
    out = ok(dynwf(project, "inspect", "stuck"))
    assert "waiting for an event" not in out
    parked = next(line for line in out.splitlines() if line.startswith("Parked"))
    assert "code will not load (" in parked and "SyntaxError" in parked, out
    detail = json.loads(ok(dynwf(project, "inspect", "stuck", "--json")))
    assert "SyntaxError" in detail["parked"]


# -- instances create / list -----------------------------------------------------------------
def test_instances_create_from_a_file_then_list(project: Path) -> None:
    (project / "order.json").write_text(json.dumps({"items": ["rice"]}))
    made = json.loads(
        ok(dynwf(project, "instances", "create", "-t", "chain", "-p", "@order.json", "--json"))
    )
    assert (made["workflow"], made["tenant"], made["status"]) == (
        WORKFLOW,
        scope_of({"tenantId": "chain"}),
        "queued",
    )
    ok(
        dynwf(
            project,
            "instances",
            "create",
            "--tenant",
            "chain",
            "--params-file",
            "order.json",
            "--id",
            "from-file",
        )
    )
    again = dynwf(
        project,
        "instances",
        "create",
        "-t",
        "chain",
        "--params-file",
        "order.json",
        "--id",
        "from-file",
    )
    assert again.returncode == 1 and "already in use" in again.stderr
    listed = json.loads(ok(dynwf(project, "instances", "list", "-t", "chain", "--json")))
    ids = [i["id"] for i in listed["instances"]]
    assert ids[:2] == ["from-file", made["id"]]
    detail = json.loads(ok(dynwf(project, "inspect", "from-file", "--json")))
    assert detail["params"] == {ENVELOPE_KEY: {"tenantId": "chain"}, "params": {"items": ["rice"]}}
    bad = dynwf(project, "instances", "create", "-t", "chain", "--params", "@nope.json")
    assert bad.returncode == 2 and "cannot read --params file nope.json" in bad.stderr


def test_run_params_from_a_file(project: Path) -> None:
    (project / "items.json").write_text(json.dumps({"items": ["a", "bb"]}))
    for how in (["--params", "@items.json"], ["--params-file", "items.json"]):
        report = json.loads(ok(dynwf(project, "run", "-t", "chain", *how, "--json")))
        assert report["output"] == {"receipt": "2 items, total 9", "total": 9}


# -- run ------------------------------------------------------------------------------------
def test_run_drives_only_its_own_instance(project: Path) -> None:
    asyncio.run(queue_instance(project / ".dynwf", "chain", "someone-elses", ITEMS))
    report = json.loads(
        ok(dynwf(project, "run", "-t", "chain", "--params", json.dumps(ITEMS), "--json"))
    )
    assert report["status"] == "complete"
    other = json.loads(ok(dynwf(project, "inspect", "someone-elses", "--json")))
    assert (other["status"], other["steps"]) == ("queued", [])


def test_run_shows_progress_on_stderr(project: Path) -> None:
    done = dynwf(project, "run", "-t", "chain", "--params", json.dumps(ITEMS))
    ok(done)
    lines = done.stderr.splitlines()
    for step in ("load", "price", "total", "receipt"):
        started = lines.index(f"▸ {step}#1 …")
        assert lines[started + 1].startswith(f"✔ {step}  ")


def test_run_inline_json_keeps_tenant_prints_out_of_stdout(project: Path) -> None:
    for mode in (["--inline"], []):
        done = dynwf(project, "run", "-t", "printer", "--json", *mode)
        report = json.loads(ok(done))  # stdout is the report and nothing else
        assert report["output"] == "done"
        assert "tenant says hello from a step" in done.stderr


def test_bad_crash_mode_is_refused_before_the_run(project: Path) -> None:
    before = json.loads(ok(dynwf(project, "inspect", "--json")))["instances"]
    done = dynwf(
        project, "run", "-t", "chain", "--params", json.dumps(ITEMS), "--crash-at", "price:durin"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "'durin' is not a moment (did you mean :during?)" in done.stderr
    assert done.stdout == ""
    assert json.loads(ok(dynwf(project, "inspect", "--json")))["instances"] == before


# -- instances steering -----------------------------------------------------------------------
def test_resume_of_a_terminated_instance_says_so(project: Path) -> None:
    ok(dynwf(project, "instances", "terminate", "same", "-t", "approval"))
    done = dynwf(project, "instances", "resume", "same", "-t", "approval")
    assert done.returncode == 1
    assert "✔" not in done.stdout + done.stderr and "resumed" not in done.stdout
    assert "is terminated, not paused: nothing to resume" in done.stderr
    fix = re.search(r"`(dynwf instances restart [^`]+)`", done.stderr)
    assert fix is not None
    restarted = dynwf(project, *shlex.split(fix.group(1))[1:])
    assert "status now queued" in ok(restarted)


def test_suggested_tenant_flags_paste_into_a_shell(project: Path) -> None:
    meta = json.dumps({"tenantId": "chain", "plan": "pro"})
    ok(
        dynwf(
            project,
            "run",
            "-t",
            "chain",
            "--metadata",
            meta,
            "--id",
            "same",
            "--params",
            json.dumps(ITEMS),
        )
    )
    listed = ok(dynwf(project, "inspect", "-t", meta))
    assert 'chain {"plan":"pro"}' in listed  # its own label, not the plain "chain"
    done = dynwf(project, "inspect", "same", "-w", WORKFLOW)
    assert done.returncode == 1
    flags = done.stderr.split("e.g. ", 1)[1].strip()
    assert flags.startswith("--tenant ")
    chosen = json.loads(ok(dynwf(project, "inspect", "same", *shlex.split(flags), "--json")))
    assert chosen["id"] == "same"
    # and the full list of places names every tenant so each can be picked
    for tenant in ("'approval'", "'chain'", '\'chain {"plan":"pro"}\''):
        assert tenant in done.stderr


# -- the command line itself ------------------------------------------------------------------
def test_version_and_shell_completion(tmp_path: Path) -> None:
    from importlib.metadata import version

    assert ok(dynwf(tmp_path, "--version")).strip() == f"dynwf {version('dynwf')}"
    assert "_dynwf_completion" in ok(dynwf(tmp_path, "--show-completion", "bash"))
    env = {"_DYNWF_COMPLETE": "complete_bash", "COMP_WORDS": "dynwf ins", "COMP_CWORD": "1"}
    assert ok(dynwf(tmp_path, env=env)).split() == ["inspect", "instances"]
    env = {
        "_DYNWF_COMPLETE": "complete_bash",
        "COMP_WORDS": "dynwf instances cr",
        "COMP_CWORD": "2",
    }
    assert ok(dynwf(tmp_path, env=env)).split() == ["create"]


def test_each_short_option_means_one_thing_in_every_command() -> None:
    from dynwf.cli import (
        _commands,  # noqa: F401  (registers the commands)
        app,
    )

    meaning: dict[str, set[str]] = {}

    def walk(command: Any, path: str) -> None:
        for param in getattr(command, "params", []):
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts if o.startswith("-") and o not in longs):
                meaning.setdefault(short, set()).update(longs)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "dynwf")
    assert {short: sorted(longs) for short, longs in meaning.items() if len(longs) != 1} == {}
    assert meaning["-t"] == {"--tenant"} and meaning["-p"] == {"--params"}


# -- the dev log ---------------------------------------------------------------------------
class Dev:
    def __init__(self, project: Path, *args: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.log = project / f"dev-{self.port}.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dynwf", "dev", "--port", str(self.port), *args],
                cwd=project,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.until("serving")

    def output(self) -> str:
        return self.log.read_text()

    def until(self, text: str) -> str:
        deadline = time.monotonic() + 60  # a hang guard only
        while text not in self.output():
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)
        return self.output()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=60) == 0


@pytest.fixture
def devs() -> Iterator[list[Dev]]:
    started: list[Dev] = []
    yield started
    for dev in started:
        if dev.proc.poll() is None:
            dev.proc.kill()
            dev.proc.wait()


def test_dev_log_says_why(tmp_path: Path, devs: list[Dev]) -> None:
    project = make_project(tmp_path)
    devs.append(dev := Dev(project))
    ok(dynwf(project, "instances", "create", "-t", "failing", "--id", "f1"))
    log = dev.until("errored  failing  f1")
    assert "step  failing  f1  check  attempt 1" in log
    assert "NonRetryableError: card declined" in log.split("errored  failing  f1", 1)[1]
    ok(dynwf(project, "instances", "create", "-t", "approval", "--id", "a1"))
    log = dev.until("waiting  approval  a1")
    assert re.search(r"waiting  approval  a1  sleeping in settle until \d\d:\d\d:\d\d \(in ", log)
    ok(dynwf(project, "inspect"))
    ok(dynwf(project, "inspect", "a1"))
    ok(dynwf(project, "instances", "pause", "a1"))
    dev.until("paused  approval  a1")
    ok(dynwf(project, "instances", "resume", "a1"))
    dev.until("resumed  approval  a1")
    ok(dynwf(project, "instances", "send-event", "a1", "--type", "approved", "--payload", "1"))
    dev.until("event  approval  a1  'approved' received")
    assert "/cdn-cgi/explorer/api" not in dev.output()  # its own API traffic is not news
    dev.stop()
    # Started again with --skip-sleeps: the recorded 2-hour sleep ends now too.
    devs.append(dev := Dev(project, "--skip-sleeps"))
    log = dev.until("complete  approval  a1")
    assert "recovered 1 unfinished instance(s) from the journal: 1 waiting" in log
    assert "approval  a1  sleeping in settle until" in log
    dev.stop()
    ok(dynwf(project, "instances", "terminate", "f1"), 1)


def test_dev_skip_sleeps_also_ends_a_sleep_already_journaled(
    project: Path, devs: list[Dev]
) -> None:
    # approval/same is 2 hours into nothing: its sleep was journaled without --skip-sleeps.
    asleep = json.loads(ok(dynwf(project, "inspect", "same", "--tenant", "approval", "--json")))
    assert asleep["status"] == "waiting"
    devs.append(dev := Dev(project, "--skip-sleeps"))
    deadline = time.monotonic() + 60  # a hang guard only
    while True:
        detail = json.loads(ok(dynwf(project, "inspect", "same", "-t", "approval", "--json")))
        if detail["status"] == "complete" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert detail["status"] == "complete", dev.output()  # the buffered event was taken
    assert detail["output"] == {"by": {"by": "ann"}}
    dev.stop()
