"""Faults around tenant code, with real isolate processes: code that cannot be found parks,
a dead spare is replaced, a hostile isolate is ended, isolate folders go away, and a
spinning ``fetch`` is stopped at ``limits.cpu_ms`` while other tenants are served."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dynwf.dispatch import TenantWorkflowBinding, _template, tenant_binding
from dynwf.dispatch import _isolate as isolate_module
from dynwf.dispatch._isolate import ROOT_PREFIX, sweep_stale
from dynwf.engine import ManualClock, instance_detail
from dynwf.project import Project, ReloadResult, reload_now, watch
from dynwf.workers import Request

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
WF = "dynamic-workflow"
pytestmark = pytest.mark.slow

WAITER = """
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        ev = python_from_rpc(await step.wait_for_event("go", "go", timeout="1 hour"))

        @step.do()
        async def after():
            return ev["payload"]

        return {"got": await after()}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("waiter here")
"""


def scope(tenant: str) -> str:
    return json.dumps({"tenantId": tenant}, separators=(",", ":"))


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private temp dir for isolate folders, so other processes' folders never count."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setenv("TMPDIR", str(tmp))  # isolate folders go there, not to /dev/shm
    yield tmp


@pytest.fixture
def project_dir(tmp_path: Path, tmp_root: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    (root / "tenants" / "waiter").mkdir()
    (root / "tenants" / "waiter" / "worker.py").write_text(WAITER)
    return root


@pytest.fixture
async def make_project(project_dir: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Project] = []

    async def make(**kwargs: Any) -> Project:
        kwargs.setdefault("clock", ManualClock())
        p = Project.load(project_dir, **kwargs)
        await p.start()
        made.append(p)
        return p

    yield make
    for p in made:
        await p.stop()


def binding(p: Project, tenant: str) -> TenantWorkflowBinding:
    return tenant_binding(p.env, {"tenantId": tenant})


async def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` (a hang guard, not a timing assertion)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still waiting for {what}")
        await asyncio.sleep(0.02)


async def waiting_instance(p: Project, id: str) -> Any:
    inst = await binding(p, "waiter").create({"id": id})
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["status"] == "waiting"
    return inst


# -- item 5: code that cannot be loaded parks --------------------------------------------


async def test_tenant_folder_moved_away_parks_its_instances_then_they_complete(
    make_project: Any, project_dir: Path, tmp_path: Path
) -> None:
    p = await make_project()
    inst = await waiting_instance(p, "w1")
    folder, away = project_dir / "tenants" / "waiter", tmp_path / "moved-away"
    folder.rename(away)
    result = await reload_now(p)  # what `dynwf dev`'s file watcher does on the move
    assert result.workers["waiter"] is not None  # the last good version keeps serving
    await inst.send_event({"type": "go", "payload": 42})
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["status"] == "waiting"  # parked, not errored
    detail = instance_detail(p.engine.lookup(WF, scope("waiter"), "w1"))
    assert detail["parked"] is not None and "load_runner() failed" in detail["parked"]
    assert "unknown tenant 'waiter'" in detail["parked"]

    away.rename(folder)
    result = await reload_now(p)
    assert result.unparked >= 1
    await p.engine.wait_until_idle(timeout=60)
    status = await inst.status()
    assert status["status"] == "complete" and status["output"] == {"got": 42}
    assert instance_detail(p.engine.lookup(WF, scope("waiter"), "w1"))["parked"] is None


async def test_watcher_sees_a_tenant_folder_moved_away_and_back(
    make_project: Any, project_dir: Path, tmp_path: Path
) -> None:
    p = await make_project()
    inst = await waiting_instance(p, "w3")
    results: list[ReloadResult] = []
    stop = asyncio.Event()
    task = asyncio.create_task(watch(p, results.append, stop=stop))
    try:
        await asyncio.sleep(0.3)  # the watcher is armed
        folder, away = project_dir / "tenants" / "waiter", tmp_path / "moved-away"
        folder.rename(away)  # one event for the folder, none for its files
        await until(lambda: any(r.workers.get("waiter") for r in results), "the move away")
        await inst.send_event({"type": "go", "payload": "back"})
        await p.engine.wait_until_idle(timeout=60)
        assert (await inst.status())["status"] == "waiting"
        away.rename(folder)
        await until(lambda: results[-1].workers.get("waiter", 1) is None, "the move back")
    finally:
        stop.set()
        await task
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["output"] == {"got": "back"}


async def test_tenant_missing_at_start_parks_and_runs_when_its_folder_comes_back(
    make_project: Any, project_dir: Path, tmp_path: Path
) -> None:
    first = Project.load(project_dir, clock=ManualClock())
    await first.start()
    try:
        await waiting_instance(first, "w2")
    finally:
        await first.stop()
    folder, away = project_dir / "tenants" / "waiter", tmp_path / "moved-away"
    folder.rename(away)
    p = await make_project()  # a new engine: the dispatcher cannot find the tenant's code
    inst = await binding(p, "waiter").get("w2")
    await inst.send_event({"type": "go", "payload": "late"})
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["status"] == "waiting"
    assert p.engine.lookup(WF, scope("waiter"), "w2").parked is not None
    away.rename(folder)
    await reload_now(p)
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["output"] == {"got": "late"}


async def test_get_code_failure_parks_then_runs_once_it_returns_code(
    make_project: Any, project_dir: Path
) -> None:
    entry = project_dir / "src" / "entry.py"
    text = entry.read_text()
    # get_code() itself fails while a flag file exists (a code store that is down).
    flag = project_dir / "store-down"
    entry.write_text(
        text.replace(
            "def tenant_code(tenant):\n",
            f"def tenant_code(tenant):\n    if Path({str(flag)!r}).exists():\n"
            "        raise ConnectionError('the code store is down')\n",
        )
    )
    flag.touch()
    p = await make_project()
    inst = await binding(p, "waiter").create({"id": "g"})
    await p.engine.wait_until_idle(timeout=60)
    st = p.engine.lookup(WF, scope("waiter"), "g")
    assert st.status.value == "waiting" and st.parked is not None
    assert "ConnectionError: the code store is down" in st.parked
    flag.unlink()
    await reload_now(p)
    await p.engine.wait_until_idle(timeout=60)
    await inst.send_event({"type": "go", "payload": 1})
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["output"] == {"got": 1}


async def test_dead_spare_handed_to_a_tenant_is_replaced(make_project: Any) -> None:
    p = await make_project()
    inst = await waiting_instance(p, "d")
    loader = p.loaders["LOADER"]
    pool = loader._pool
    await until(lambda: bool(pool._spares) and pool._spares[0].done(), "a booted spare")
    spare = pool._spares[0].result()[0]
    os.kill(spare.pid, signal.SIGKILL)  # the spare dies first ...
    await spare.wait()
    iso = loader._workers["waiter"]._isolate
    assert iso is not None
    os.kill(iso.pid, signal.SIGKILL)  # ... then the tenant's isolate
    await iso.proc.wait()
    await inst.send_event({"type": "go", "payload": "after two deaths"})
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["output"] == {"got": "after two deaths"}


async def test_spare_whose_template_died_while_forking_it_is_replaced(
    make_project: Any,
) -> None:
    p = await make_project()
    inst = await waiting_instance(p, "d")
    loader = p.loaders["LOADER"]
    pool = loader._pool

    async def fork_failed() -> Any:  # what a spare's task holds if its template died
        raise _template.TemplateError("the isolates' template process exited")

    pool._spares.appendleft(asyncio.ensure_future(fork_failed()))
    iso = loader._workers["waiter"]._isolate
    assert iso is not None
    os.kill(iso.pid, signal.SIGKILL)  # the next pass needs a new isolate: the failed spare's
    await iso.proc.wait()
    await inst.send_event({"type": "go", "payload": "after a failed spare"})
    await p.engine.wait_until_idle(timeout=60)
    assert (await inst.status())["output"] == {"got": "after a failed spare"}
    assert not any(t.done() and t.exception() for t in pool._spares)


# -- item 6: the engine trusts nothing an isolate sends ----------------------------------

# Tenant code in attempt 1 of a step reaches into its isolate and sends one raw message
# ({run} is the pass's token, {key} the step's key); then it waits to be ended.
HOSTILE = """
import asyncio, gc
from workers import WorkflowEntrypoint


def _find(name):
    return next(o for o in gc.get_objects() if type(o).__name__ == name)


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do(config={{"retries": {{"limit": 2, "delay": 0}}}})
        async def risky(ctx):
            if ctx["attempt"] == 1:
                conn, host = _find("Connection"), _find("RemoteHost")
                run, key = host._run, "do:risky#1"
                msg = {msg}
                if {one_way}:
                    conn.notify(msg)
                else:
                    asyncio.ensure_future(conn.request(msg))
                await asyncio.sleep(120)
            return ctx["attempt"]

        return {{"attempt": await risky()}}
"""

HOSTILE_MESSAGES = {
    # a Pass method outside the protocol that would record a forged result
    "unknown-method": (
        '{"op": "host", "run": run, "method": "do_done", "args": [key, 1, "forged"]}',
        False,
    ),
    "dunder-method": ('{"op": "host", "run": run, "method": "__init__", "args": []}', False),
    "method-not-a-string": ('{"op": "host", "run": run, "method": ["do_end"], "args": []}', False),
    "wrong-arg-types": (
        '{"op": "host", "run": run, "method": "do_begin", "args": [key, "risky", "one", None]}',
        False,
    ),
    "too-few-args": ('{"op": "host", "run": run, "method": "sleep", "args": [key]}', False),
    "args-not-a-list": ('{"op": "host", "run": run, "method": "do_end", "args": "x"}', True),
    "forged-result-of-another-step": (
        '{"op": "host", "run": run, "method": "do_end", '
        '"args": ["do:other#1", 1, True, "forged", None, True]}',
        True,
    ),
    # the answer to the engine's run request, with an error that is not {name, message}
    "malformed-run-error": (
        '{"re": next(iter(conn._tasks)), "ok": False, "error": {"name": ["x"], "message": 1}}',
        True,
    ),
    "unknown-op": ('{"op": "shell", "args": []}', False),
    "unknown-binding": (
        '{"op": "binding", "binding": "NOPE", "kind": "binding", "method": "create", "args": [{}]}',
        False,
    ),
    "binding-method-outside-the-table": (
        '{"op": "binding", "binding": "WORKFLOWS", '
        '"kind": "instance", "method": "_engine", '
        '"args": ["x"]}',
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_MESSAGES))
async def test_isolate_sending_outside_the_protocol_is_ended(
    make_project: Any, project_dir: Path, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    msg, one_way = HOSTILE_MESSAGES[case]
    (project_dir / "tenants" / "hostile").mkdir()
    (project_dir / "tenants" / "hostile" / "worker.py").write_text(
        HOSTILE.format(msg=msg, one_way=one_way)
    )
    caplog.set_level(logging.WARNING, logger="dynwf.dispatch")
    p = await make_project()
    inst = await binding(p, "hostile").create({"id": "h"})
    neighbour = await waiting_instance(p, "n")
    await p.engine.wait_until_idle(timeout=60)
    status = await inst.status()
    # The isolate was ended: attempt 1 was cut (an internal error), attempt 2 ran in a
    # new isolate; nothing the message asked for happened in the engine.
    assert status["status"] == "complete" and status["output"] == {"attempt": 2}, status
    attempts = p.engine.lookup(WF, scope("hostile"), "h").steps["do:risky#1"].attempts
    assert [a.ok for a in attempts] == [False, True]
    assert attempts[0].error is not None and attempts[0].error["name"] == "WorkflowInternalError"
    killed = [r.getMessage() for r in caplog.records if "killed" in r.getMessage()]
    assert any(
        "'hostile'" in m and ("protocol" in m or "not running" in m or "malformed" in m)
        for m in killed
    )
    await neighbour.send_event({"type": "go", "payload": "ok"})
    await p.engine.wait_until_idle(timeout=60)
    assert (await neighbour.status())["output"] == {"got": "ok"}


# -- item 6: isolate folders are removed -------------------------------------------------


def folders(tmp: Path) -> list[Path]:
    return sorted(tmp.glob(f"{ROOT_PREFIX}*"))


def holding(tmp: Path, text: str) -> list[Path]:
    """The isolate folders whose worker.py contains ``text``."""
    found = []
    for f in folders(tmp):
        try:
            if text in (f / "worker.py").read_text():
                found.append(f)
        except OSError:
            pass  # not written yet, or being removed
    return found


async def test_isolate_folders_are_removed_on_kill_crash_and_shutdown(
    make_project: Any, project_dir: Path, tmp_root: Path
) -> None:
    (project_dir / "tenants" / "crashy").mkdir()
    (project_dir / "tenants" / "crashy" / "worker.py").write_text(
        "import os\nfrom workers import WorkflowEntrypoint\n\n\n"
        "class TenantWorkflow(WorkflowEntrypoint):\n"
        "    async def run(self, event, step):\n"
        "        @step.do(config={'retries': {'limit': 0}})\n"
        "        async def die():\n"
        "            os._exit(3)\n\n"
        "        await die()\n"
    )
    p = await make_project()
    await waiting_instance(p, "f")
    loader = p.loaders["LOADER"]
    iso = loader._workers["waiter"]._isolate
    assert iso is not None
    mine = holding(tmp_root, "class TenantWorkflow")
    assert len(mine) == 1
    os.kill(iso.pid, signal.SIGKILL)
    await until(lambda: not mine[0].exists(), "the SIGKILLed isolate's folder to go")

    crashy = await binding(p, "crashy").create({"id": "c"})
    await p.engine.wait_until_idle(timeout=60)
    assert (await crashy.status())["status"] == "errored"
    # Its first isolate crashed in the step; the second one replayed the error and lives.
    await until(lambda: len(holding(tmp_root, "os._exit")) == 1, "the crashed one's folder to go")
    await p.stop()  # the spare's and every live isolate's folder go with them
    assert folders(tmp_root) == []


@pytest.mark.skipif(not isolate_module._shm_usable(), reason="no writable /dev/shm here")
async def test_isolate_folders_are_made_in_memory_unless_tmpdir_is_set(
    make_project: Any, tmp_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TMPDIR")
    p = await make_project()
    await waiting_instance(p, "m")
    iso = p.loaders["LOADER"]._workers["waiter"]._isolate
    assert iso is not None and Path(iso.root).parent == Path(isolate_module.SHM)
    assert "class TenantWorkflow" in (Path(iso.root) / "worker.py").read_text()
    assert folders(tmp_root) == []  # nothing in the temp dir
    await p.stop()
    assert not Path(iso.root).exists()
    monkeypatch.setenv("TMPDIR", str(tmp_root))
    assert isolate_module.isolates_dir() == str(tmp_root)


ENGINE = """
import asyncio, sys
from dynwf.dispatch import tenant_binding
from dynwf.project import Project


async def main():
    p = Project.load(sys.argv[1])
    await p.start()
    b = tenant_binding(p.env, {"tenantId": "waiter"})
    await b.create({"id": "k"})
    await p.engine.wait_until_idle(timeout=60)
    print("READY", flush=True)
    await asyncio.sleep(600)


asyncio.run(main())
"""


def test_folders_of_a_killed_engine_are_swept_at_the_next_start(
    project_dir: Path, tmp_root: Path
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_root), "DYNWF_PERSIST_TO": str(tmp_root.parent / "st")}
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(project_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert engine.stdout is not None
        assert engine.stdout.readline().strip() == "READY"
        left = folders(tmp_root)
        assert left and all(f.name.startswith(f"{ROOT_PREFIX}{engine.pid}-") for f in left)
    finally:
        engine.kill()
        engine.wait(timeout=60)
        if engine.stdout is not None:
            engine.stdout.close()
    # A folder of a live engine (this test process) is left alone.
    live = tmp_root / f"{ROOT_PREFIX}{os.getpid()}-keep"
    live.mkdir()
    assert sweep_stale(str(tmp_root)) >= 1
    assert folders(tmp_root) == [live]


# -- item 11: the CPU cap covers fetch ---------------------------------------------------

SPIN_FETCH = """
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.url.endswith("/spin"):
            while True:
                pass
        return Response("spinner, calm")
"""


async def test_spinning_fetch_is_stopped_at_cpu_ms_while_a_neighbour_is_served(
    make_project: Any, project_dir: Path
) -> None:
    config = project_dir / "wrangler.toml"
    text = config.read_text()
    first_table = text.index("[[")
    config.write_text(text[:first_table] + "[limits]\ncpu_ms = 300\n\n" + text[first_table:])
    (project_dir / "tenants" / "spinner").mkdir()
    (project_dir / "tenants" / "spinner" / "worker.py").write_text(SPIN_FETCH)
    p = await make_project()
    assert p.loaders["LOADER"].limits.cpu_ms == 300

    spin = asyncio.create_task(p.fetch(Request("http://localhost/spinner/spin")))
    neighbour = await asyncio.wait_for(p.fetch(Request("http://localhost/waiter/")), 60)
    assert neighbour.status == 200 and neighbour.body == b"waiter here"
    r = await asyncio.wait_for(spin, 60)
    assert r.status == 503
    assert r.body.startswith(b"Error 1102: Worker exceeded resource limits")
    assert b"'spinner'" in r.body and b"300 ms" in r.body
    # The isolate was replaced: the tenant answers its next request.
    calm = await asyncio.wait_for(p.fetch(Request("http://localhost/spinner/calm")), 60)
    assert calm.status == 200 and calm.body == b"spinner, calm"
