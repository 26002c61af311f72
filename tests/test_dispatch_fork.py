"""The fork server: isolates forked from one pre-imported template process, which dies
with the engine (and its isolates with it), is replaced when it dies, and is not used
where fork is unavailable."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dynwf.dispatch import _isolate, _isolate_main, _template
from dynwf.project import Project
from dynwf.workers import Request

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _template.available(), reason="the fork server needs Linux"),
]

# A tenant that answers with facts about its own process.
PROBE = """
import os

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(f"{os.getpid()} {os.getppid()} {os.getsid(0)}")
"""


# A tenant that says how its sandbox's filesystem view was made, and tries the file of
# ``?path`` past Python (so Landlock, not the audit hook, answers).
VIEW = """
import ctypes
import json
import os
import sys

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        given = sys.modules["dynwf.dispatch._isolate_main"].BOOT.ruleset
        try:
            os.fstat(given)
            still_open = True
        except (OSError, TypeError, ValueError):
            still_open = False
        with open("worker.py") as own:  # its own module, in its working directory
            reads_own = "BOOT.ruleset" in own.read()
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.open(request.url.split("?", 1)[1].encode(), os.O_RDONLY)
        other = 0 if fd >= 0 else ctypes.get_errno()
        return Response(json.dumps(
            {"given": given, "still_open": still_open, "reads_own": reads_own, "other": other}
        ))
"""


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` (a hang guard, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    for tenant, code in (("probe", PROBE), ("probe2", PROBE), ("view", VIEW)):
        (root / "tenants" / tenant).mkdir()
        (root / "tenants" / tenant / "worker.py").write_text(code)
    return root


@pytest.fixture
async def make_project(project_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Project] = []

    async def make() -> Project:
        p = Project.load(project_dir)
        await p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.stop()


async def probe(p: Project, tenant: str) -> tuple[int, int, int]:
    r = await asyncio.wait_for(p.fetch(Request(f"http://localhost/{tenant}/")), 60)
    assert r.status == 200, r.body
    pid, ppid, sid = (int(v) for v in r.body.decode().split())
    return pid, ppid, sid


async def test_fork_every_isolate_is_a_child_of_one_template_child_of_the_engine(
    make_project: Any,
) -> None:
    p = await make_project()
    one, two = await probe(p, "probe"), await probe(p, "probe2")
    template = p.loaders["LOADER"]._pool._template
    assert template is not None
    assert one[1] == two[1] == template.proc.pid  # both forked by the same template
    assert parent_of(template.proc.pid) == os.getpid()  # which the engine started
    assert one[0] != two[0]
    assert one[2] == one[0] and two[2] == two[0]  # each in its own session, as spawned


async def test_fork_isolate_enters_the_landlock_ruleset_its_template_built(
    make_project: Any,
) -> None:
    p = await make_project()
    await probe(p, "probe")
    iso = p.loaders["LOADER"]._workers["probe"]._isolate
    assert iso is not None and iso.root
    neighbour = os.path.join(iso.root, "worker.py")
    r = await asyncio.wait_for(p.fetch(Request(f"http://localhost/view/?{neighbour}")), 60)
    assert r.status == 200, r.body
    seen = json.loads(r.body)
    # The template built the ruleset and said which descriptor; the isolate enforced that
    # one (and closed it) instead of building its own, and it holds: its own modules are
    # readable, a neighbour isolate's are not (EACCES from Landlock itself).
    assert isinstance(seen["given"], int), seen
    assert seen["still_open"] is False and seen["reads_own"] is True, seen
    assert seen["other"] == 13, seen


async def test_fork_template_killed_is_replaced_and_tenants_are_served_again(
    make_project: Any,
) -> None:
    p = await make_project()
    pid, template_pid, _ = await probe(p, "probe")
    os.kill(template_pid, signal.SIGKILL)
    await until(lambda: not running(pid), "the isolate to die with its template")
    again, new_template, _ = await probe(p, "probe")
    assert again != pid and new_template != template_pid
    assert parent_of(new_template) == os.getpid()


async def test_fork_evicted_isolate_is_killed_by_its_template(make_project: Any) -> None:
    p = await make_project()
    pid, template_pid, _ = await probe(p, "probe")
    loader = p.loaders["LOADER"]
    template = loader._pool._template
    assert template is not None and template.proc.pid == template_pid
    sent: list[int] = []
    ask = template.kill_child

    def kill_child(child: int) -> bool:
        sent.append(child)
        return ask(child)

    template.kill_child = kill_child
    iso = loader._workers["probe"]._isolate
    assert iso is not None and iso.pid == pid
    assert await loader.evict("probe")
    await until(lambda: not running(pid), "the evicted isolate to exit")
    assert sent == [pid]  # asked of the template, which reaps it and reports its exit
    # It died of the SIGKILL, not woken first to the end of its input (the engine closes
    # its end of the socket only once the process is gone), and then that end is closed.
    assert await asyncio.wait_for(iso.proc.wait(), 60) == -signal.SIGKILL
    await asyncio.wait_for(iso.conn.closed, 60)
    again, same_template, _ = await probe(p, "probe")  # loaded again, forked again
    assert again != pid and same_template == template_pid


async def test_fork_pool_close_stops_the_template_and_every_isolate(make_project: Any) -> None:
    p = await make_project()
    pid, template_pid, _ = await probe(p, "probe")
    pool = p.loaders["LOADER"]._pool
    await until(lambda: bool(pool._spares) and all(t.done() for t in pool._spares), "spares")
    spares = [t.result()[0].pid for t in pool._spares]
    await p.stop()
    for gone in (pid, template_pid, *spares):
        await until(lambda gone=gone: not running(gone), f"process {gone} to exit")


ENGINE = """
import asyncio, os, sys
from dynwf.project import Project
from dynwf.workers import Request


async def main():
    p = Project.load(sys.argv[1])
    await p.start()
    r = await p.fetch(Request("http://localhost/probe/"))
    print(r.body.decode(), flush=True)
    await asyncio.sleep(600)


asyncio.run(main())
"""


async def test_fork_engine_killed_outright_takes_its_template_and_isolates_down(
    project_dir: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "DYNWF_PERSIST_TO": str(tmp_path / "state")}
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(project_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert engine.stdout is not None
        pid, template_pid, _ = (int(v) for v in engine.stdout.readline().split())
        assert parent_of(template_pid) == engine.pid
    finally:
        engine.kill()
        engine.wait(timeout=60)
        if engine.stdout is not None:
            engine.stdout.close()
    await until(lambda: not running(template_pid), "the template to die with the engine")
    await until(lambda: not running(pid), "the isolate to die with the template")


async def test_fork_unavailable_spawns_interpreters_and_says_so_once(
    make_project: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dynwf.dispatch")
    monkeypatch.setattr(_template, "available", lambda: False)
    monkeypatch.setattr(_isolate, "_spawn_said", False)
    first, second = await make_project(), await make_project()
    for p in (first, second):
        pid, ppid, sid = await probe(p, "probe")
        assert ppid == os.getpid() and sid == pid  # a fresh interpreter, in its own session
        assert p.loaders["LOADER"]._pool._template is None
    said = [r for r in caplog.records if "need" in r.getMessage() and "Linux" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in caplog.records]


async def test_fork_an_isolate_that_exits_at_once_is_still_seen_to_exit() -> None:
    # The template's "forked" and "exited" for one isolate can arrive in one read, before
    # the fork() that waits for the first runs again: the exit must not be lost, or
    # stopping the pool waits for that isolate forever.
    import json
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    template = _template.Template(proc, ours)
    theirs.send(json.dumps({"ready": proc.pid}).encode())
    a, b = socket.socketpair()
    _fds: list[int] = []
    try:
        forking = asyncio.create_task(template.fork({}, [a.fileno()], "x"))
        data, _fds, _flags, _addr = await asyncio.to_thread(socket.recv_fds, theirs, 65536, 2)
        n = json.loads(data)["fork"]
        theirs.send(json.dumps({"forked": n, "pid": 999_999_999, "root": "/nowhere"}).encode())
        theirs.send(json.dumps({"exited": 999_999_999, "code": 3}).encode())
        child = await forking
        async with asyncio.timeout(30):  # a hang, not a speed: the exit is already known
            assert await child.wait() == 3
    finally:
        for fd in _fds:
            os.close(fd)
        a.close()
        b.close()
        theirs.close()
        await template.close()


def test_fork_spare_taken_at_once_skips_its_warm_up() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert _isolate_main.should_warm_up(theirs.fileno(), wait_s=0.01)  # nobody took it
        ours.send(b"\0\0\0\2{}")  # a cold load's first bytes
        assert not _isolate_main.should_warm_up(theirs.fileno(), wait_s=5.0)
    finally:
        ours.close()
        theirs.close()


async def test_fork_warm_up_runs_a_cold_loads_path_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    engine = _isolate_main._warm_up_engine

    async def recording(msg: dict[str, Any]) -> Any:
        seen.append(msg.get("method") or msg.get("op"))
        return await engine(msg)

    monkeypatch.setattr(_isolate_main, "_warm_up_engine", recording)
    finders = list(sys.meta_path)
    await _isolate_main.warm_up(tmp_path)
    # The run's first step began on the grant (no do_begin round trip) and ended.
    assert "granted" in seen and "do_end" in seen and "do_begin" not in seen
    assert list(tmp_path.iterdir()) == []
    assert "_dynwf_warm_up" not in sys.modules and sys.meta_path == finders
