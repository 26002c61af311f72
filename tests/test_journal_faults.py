"""A journal that fails, is held, damaged or missing data, with real processes.

Each test runs ``python -m dynwf ...`` as a user would: a commit failure injected
with a file size limit (``RLIMIT_FSIZE``: the ``.wal`` write fails with EFBIG, as a
full disk would), a second ``dynwf dev`` on the same state, journals cut or with
flipped bytes, a lost ``.wal``, and a ``dynwf run`` supervisor killed with SIGKILL.
Timeouts here are hang guards only; the "within 2 s" target is measured in bench/.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynwf.journal import Journal, encode
from tests.test_cli_dev import Dev, free_port

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = pytest.mark.slow

# Each step appends its name to a side-effect file, so a test can count how many
# times a callback really ran across processes; its result is ~6 KB, so a few
# commits fill a small .wal.
BIG = """
import os

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        sizes = []
        for name in ("one", "two", "three", "four"):

            @step.do(name)
            async def chunk():
                with open(SIDE_FILE, "a") as f:
                    f.write(name + "\\n")
                return name * 2000

            sizes.append(len(await chunk()))
        return sizes


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        body = await request.json()
        inst = await self.env.WORKFLOWS.create({"id": body.get("id"), "params": body.get("params")})
        return Response.json({"id": inst["id"]})
"""

# One long sleep inside a `dynwf run` (it waits sleeps out up to --max-wait).
SLEEPER = """
from workers import WorkerEntrypoint, WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.sleep("long", "60 seconds")
        return "woke"


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        raise RuntimeError("not used")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    # The one folder the tenant may write (the sandbox's testing hole), for every dynwf
    # started here; the tenant's code names the file in it.
    (tmp_path / "side").mkdir()
    monkeypatch.setenv("DYNWF_SANDBOX_ALLOW", str(tmp_path / "side"))
    big = BIG.replace("SIDE_FILE", repr(str(side_file(root))))
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns(".dynwf"))
    for name, code in (("big", big), ("sleeper", SLEEPER)):
        (root / "tenants" / name).mkdir()
        (root / "tenants" / name / "worker.py").write_text(code)
    return root


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[Any]]]:
    procs: list[subprocess.Popen[Any]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def dynwf(
    project: Path, *args: str, limit: int | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run ``dynwf ARGS`` to its end (the timeout is a hang guard); ``limit`` caps file sizes."""
    return subprocess.run(
        [sys.executable, "-m", "dynwf", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_file_size_limit(limit) if limit else None,
    )


def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The refusal: exit 1 and exactly one error line on stderr, the last, no traceback
    (``dynwf run``'s progress lines for the steps before it may come first)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr
    assert all(line.startswith(("▸ ", "✔ ", "✗ ", "… ")) for line in lines[:-1]), done.stderr
    return lines[-1]


def fresh_journal(project: Path) -> Path:
    """An empty journal made beforehand: under a small file size limit DuckDB could not
    create one (a new file is ~800 KB); on an existing one only the .wal grows."""
    path = project / ".dynwf" / "journal.duckdb"
    Journal(path).close()
    return path


def side_file(project: Path) -> Path:
    return project.parent / "side" / "side.txt"


def side(project: Path) -> list[str]:
    f = side_file(project)
    return f.read_text().split() if f.exists() else []


def inspect_json(project: Path, *args: str) -> Any:
    done = dynwf(project, "inspect", "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def wait_status(project: Path, id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        detail: dict[str, Any] = inspect_json(project, id)
        if detail["status"] == status or time.monotonic() > deadline:
            return detail
        time.sleep(0.2)


# -- item 3: a failed commit stops the engine ------------------------------------------
def test_run_stops_at_a_failed_commit_and_dev_recovers_what_was_committed(
    project: Path, running: list[subprocess.Popen[Any]]
) -> None:
    fresh_journal(project)
    # ~14 KB of .wal: the create, step "one" (6 KB) and "two"'s attempt fit; "two"'s
    # result does not, so that commit fails with EFBIG.
    done = dynwf(project, "run", "--tenant", "big", "--id", "b1", limit=14_000)
    line = one_error_line(done)
    assert "a commit to the journal" in line and "File too large" in line
    assert "the engine stopped" in line
    # The step whose result the failed commit held ran; nothing ran after it. Where the
    # limit bites depends on the facts' sizes, so take the committed steps from the journal.
    detail = inspect_json(project, "b1")
    committed = [s["name"][:-2] for s in detail["steps"] if s.get("success")]
    names = ["one", "two", "three", "four"]
    assert 1 <= len(committed) < 4 and committed == names[: len(committed)]
    lost = names[len(committed)]
    assert side(project) == [*committed, lost]  # nothing ran after the failed commit

    dev = Dev(project, "--skip-retry-delays")
    running.append(dev.proc)
    done_detail = wait_status(project, "b1", "complete")
    assert done_detail["output"] == [6000, 6000, 10000, 8000]
    # committed steps were replayed, never run again; the lost result's step ran again
    assert side(project) == [*committed, lost, *names[len(committed) :]]
    assert dev.stop() == 0


def test_dev_stops_at_a_failed_commit_and_keeps_every_acknowledged_create(
    project: Path, running: list[subprocess.Popen[Any]]
) -> None:
    fresh_journal(project)
    port = free_port()
    log = project / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dynwf", "dev", "--port", str(port), "--no-reload"],
            cwd=project,
            stdout=subprocess.DEVNULL,
            stderr=out,
            preexec_fn=_file_size_limit(40_000),
        )
    running.append(proc)
    deadline = time.monotonic() + 60  # hang guard
    while "serving" not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    acked, refused = [], 0
    for i in range(200):
        if proc.poll() is not None:
            break
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/big/start", json={"id": f"i{i}"}, timeout=30)
        except httpx.HTTPError:
            refused += 1
            continue
        if r.status_code == 200:
            acked.append(f"i{i}")
        else:
            refused += 1
    assert proc.wait(timeout=60) == 1
    out = log.read_text()
    assert "Traceback" not in out and "stopped; unfinished" not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "File too large" in errors[0], out
    assert out.rstrip().splitlines()[-1] == errors[0]
    assert acked and refused  # some creates were acknowledged before the failure, none after
    listed = {i["id"] for i in inspect_json(project, "--limit", "500")["instances"]}
    assert set(acked) <= listed  # everything acknowledged is in the journal

    dev = Dev(project, "--skip-retry-delays")
    running.append(dev.proc)
    for id in acked:
        assert wait_status(project, id, "complete")["status"] == "complete"
    assert dev.stop() == 0


# -- item 4: a second dev server ---------------------------------------------------------
def test_second_dev_on_the_same_state_refuses_naming_the_pid(
    project: Path, running: list[subprocess.Popen[Any]]
) -> None:
    dev = Dev(project)
    running.append(dev.proc)
    second = dynwf(project, "dev", "--port", str(free_port()), timeout=60)
    line = one_error_line(second)
    assert (
        f"the journal {project / '.dynwf' / 'journal.duckdb'} is in use by PID {dev.proc.pid}"
        in line
    )
    assert "--persist-to" in line
    assert dev.proc.poll() is None  # the first server is untouched
    assert dev.stop() == 0


# -- item 9: a journal that cannot be opened -------------------------------------------
def _good_journal(path: Path) -> None:
    """A checkpointed journal with enough facts that they fill more than its first half."""
    journal = Journal(path)
    rows = []
    for i in range(3000):
        created = {"workflow": "w", "scope": "", "id": f"i{i}", "params": {"pad": "x" * 50}}
        rows.append((f"u{i}", 2 * i + 1, 1, "created", None, encode(created)))
        rows.append((f"u{i}", 2 * i + 2, 1, "status", None, encode({"status": "complete"})))
    journal.append(rows)
    journal.close()


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        chunk = f.read(64)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in chunk))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "half": lambda p: os.truncate(p, p.stat().st_size // 2),
    "4k": lambda p: os.truncate(p, 4096),
    "empty": lambda p: os.truncate(p, 0),
    "flipped-header": lambda p: _flip(p, 8),
    "flipped-block": lambda p: _flip(p, 12288 + 64),  # the first data block: checksum fails
}
COMMANDS = {
    "dev": ["dev", "--port", "0", "--no-reload"],
    "run": ["run", "--tenant", "big", "--id", "new"],
    "inspect": ["inspect"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_journal_is_refused_in_one_line(project: Path, damage: str, command: str) -> None:
    path = project / ".dynwf" / "journal.duckdb"
    _good_journal(path)
    DAMAGE[damage](path)
    done = dynwf(project, *COMMANDS[command], timeout=60)
    line = one_error_line(done)
    assert "journal.duckdb" in line and "damaged" in line
    assert "move" in line and "fresh state directory" in line  # what to do


def test_damaged_journal_is_refused_by_inspect_of_an_instance_and_instances(
    project: Path,
) -> None:
    path = project / ".dynwf" / "journal.duckdb"
    _good_journal(path)
    DAMAGE["half"](path)
    for args in (["inspect", "i1"], ["instances", "pause", "i1"]):
        line = one_error_line(dynwf(project, *args, timeout=60))
        assert "journal.duckdb" in line and "damaged" in line


def test_held_journal_is_refused_by_dev_and_run_naming_the_pid(project: Path) -> None:
    from tests.fixtures.client_state import Holder

    path = fresh_journal(project)
    holder = Holder(path, "write")
    try:
        for args in (COMMANDS["dev"], COMMANDS["run"]):
            line = one_error_line(dynwf(project, *args, timeout=60))
            assert f"is in use by PID {holder.pid}" in line
    finally:
        holder.stop()


def test_lost_wal_and_tail_are_refused_until_data_loss_is_accepted(
    project: Path, running: list[subprocess.Popen[Any]]
) -> None:
    dev = Dev(project, "--no-reload")
    running.append(dev.proc)
    for i in range(5):
        r = httpx.post(f"{dev.url}/big/start", json={"id": f"w{i}"}, timeout=30)
        assert r.status_code == 200
    dev.proc.kill()  # SIGKILL: no checkpoint, every fact lives in the .wal or the tail
    dev.proc.wait()
    state = project / ".dynwf"
    wal, tail = state / "journal.duckdb.wal", state / "journal.duckdb.tail"
    assert wal.exists() or tail.exists()

    # both intact: a killed writer loses nothing, and the next open says nothing
    listed = {i["id"] for i in inspect_json(project)["instances"]}
    assert {f"w{i}" for i in range(5)} <= listed

    wal.unlink(missing_ok=True)
    tail.unlink(missing_ok=True)
    for args in (["inspect"], COMMANDS["dev"], COMMANDS["run"]):
        line = one_error_line(dynwf(project, *args, timeout=60))
        assert "journal.duckdb is missing data" in line and "--accept-data-loss" in line
    accepted = Dev(project, "--no-reload", "--accept-data-loss")
    running.append(accepted.proc)
    assert accepted.stop() == 0
    assert not (state / "journal.duckdb.open").exists()  # a clean close clears the mark
    assert inspect_json(project)["instances"] == []  # what was lost stays lost, said once


# -- item 10: no orphan engine ---------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_killing_the_run_supervisor_kills_its_engine(
    project: Path, running: list[subprocess.Popen[Any]]
) -> None:
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dynwf",
            "run",
            "--tenant",
            "sleeper",
            "--id",
            "s1",
            "--max-wait",
            "5 minutes",
        ],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    running.append(supervisor)
    deadline = time.monotonic() + 60  # hang guard: the engine child starts
    while not (engines := _children(supervisor.pid)):
        assert supervisor.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.05)
    engine = engines[0]
    deadline = time.monotonic() + 60  # ... and holds the journal with the instance in it
    while not (project / ".dynwf" / "journal.duckdb.open").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()
    deadline = time.monotonic() + 30  # hang guard: the kernel kills the engine with it
    while _alive(engine):
        assert time.monotonic() < deadline, "the engine outlived its supervisor"
        time.sleep(0.05)
    # the journal is free again: the next run starts at once and recovers nothing false
    again = dynwf(project, "run", "--json", "--tenant", "big", "--id", "b2", timeout=120)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "complete"
