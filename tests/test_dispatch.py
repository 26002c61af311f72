"""Dynamic dispatch: tenants' own code, isolation, scoping, forged metadata, crashes, eviction."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dynwf.compat._jsobject import JsObject
from dynwf.compat.pyodide_ffi import create_proxy
from dynwf.dispatch import IsolateLimits, TenantWorkflowBinding, tenant_binding
from dynwf.dispatch import _compiled as compiled_module
from dynwf.dispatch import _isolate as isolate_module
from dynwf.dispatch import _loader as loader_module
from dynwf.dispatch._isolate import discard
from dynwf.dispatch._loader import FETCH_LOAD_TRIES, WorkerStub
from dynwf.engine import ManualClock, PassInterrupted, TimeControl
from dynwf.errors import InstanceNotFoundError, ValidationError
from dynwf.project import Project
from dynwf.workers import Request

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = pytest.mark.slow

WORKER = """
import os
from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do(config={{"retries": {{"limit": 2, "delay": 0}}, "timeout": "1 minute"}})
        async def risky(ctx):
            if ctx["attempt"] == 1:
                {body}
            return ctx["attempt"]

        return {{"attempt": await risky()}}
"""


def add_tenant(root: Path, name: str, body: str) -> None:
    (root / "tenants" / name).mkdir()
    (root / "tenants" / name / "worker.py").write_text(WORKER.format(body=body))


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
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


async def post(p: Project, tenant: str, body: dict[str, Any]) -> Any:
    r = await p.fetch(
        Request(f"http://localhost/{tenant}/start", method="POST", body=json.dumps(body))
    )
    assert r.status == 200, r.body
    return json.loads(r.body)


def binding(p: Project, tenant: str) -> TenantWorkflowBinding:
    return tenant_binding(p.env, {"tenantId": tenant})


@pytest.mark.parametrize("isolation", ["process", "inline"])
async def test_dispatch_each_tenant_runs_its_own_code_with_same_id(
    make_project: Any, isolation: str
) -> None:
    p = await make_project(isolation=isolation)
    assert await post(p, "acme", {"id": "order-1", "params": {"name": "ann"}}) == {
        "id": "order-1",
        "tenant": "acme",
    }
    await post(p, "globex", {"id": "order-1", "params": {"name": "bob"}})
    await p.engine.wait_until_idle(timeout=300)
    p.engine.clock.advance("1 hour")
    await p.engine.wait_until_idle(timeout=300)
    acme = await (await binding(p, "acme").get("order-1")).status()
    globex = await (await binding(p, "globex").get("order-1")).status()
    assert acme["output"] == {"tenant": "acme", "text": "HELLO ANN FROM ACME"}
    assert globex["output"] == {"tenant": "globex", "text": "greetings bob, globex here", "n": 3}


async def test_dispatch_foreign_id_is_not_found_like_a_missing_one(make_project: Any) -> None:
    p = await make_project()
    await post(p, "acme", {"id": "secret", "params": {"name": "ann"}})
    with pytest.raises(InstanceNotFoundError) as foreign:
        await binding(p, "globex").get("secret")
    with pytest.raises(InstanceNotFoundError) as missing:
        await binding(p, "globex").get("never-made")
    assert str(foreign.value).replace("secret", "X") == str(missing.value).replace(
        "never-made", "X"
    )


async def test_dispatch_forged_metadata_in_params_cannot_reroute(make_project: Any) -> None:
    p = await make_project()
    forged = {"__dispatcherMetadata": {"tenantId": "globex"}, "name": "mallory"}
    await post(p, "acme", {"id": "forged", "params": forged})
    await p.engine.wait_until_idle(timeout=300)
    p.engine.clock.advance("1 hour")
    await p.engine.wait_until_idle(timeout=300)
    status = await (await binding(p, "acme").get("forged")).status()
    assert status["output"]["tenant"] == "acme"  # acme's code ran, in acme's scope
    with pytest.raises(InstanceNotFoundError):
        await binding(p, "globex").get("forged")


async def test_dispatch_without_envelope_errors_naming_wrap_workflow_binding(
    make_project: Any,
) -> None:
    p = await make_project()
    inst = await p.engine.binding("WORKFLOWS").create({"params": {"name": "raw"}})
    await p.engine.wait_until_idle(timeout=300)
    status = await inst.status()
    assert status["status"] == "errored"
    assert status["error"]["name"] == "MissingDispatcherMetadataError"
    assert "wrap_workflow_binding" in status["error"]["message"]


async def test_dispatch_step_calling_os_exit_fails_only_its_attempt(
    make_project: Any, project_dir: Path
) -> None:
    add_tenant(project_dir, "crashy", "os._exit(1)")
    p = await make_project()
    crashy = await binding(p, "crashy").create({"id": "c"})
    await post(p, "acme", {"id": "a", "params": {"name": "ann"}})
    await p.engine.wait_until_idle(timeout=300)
    assert (await crashy.status())["output"] == {"attempt": 2}
    st = p.engine.lookup("dynamic-workflow", '{"tenantId":"crashy"}', "c")
    attempts = st.steps["do:risky#1"].attempts
    assert [a.ok for a in attempts] == [False, True]
    assert attempts[0].error["name"] == "WorkflowInternalError"
    assert (await (await binding(p, "acme").get("a")).status())["status"] == "waiting"


async def test_dispatch_step_spinning_forever_is_killed_at_cpu_limit(
    make_project: Any, project_dir: Path
) -> None:
    add_tenant(project_dir, "spinner", "while True: pass")
    p = await make_project(limits=IsolateLimits(cpu_ms=300))
    spinner = await binding(p, "spinner").create({"id": "s"})
    await post(p, "acme", {"id": "a", "params": {"name": "ann"}})
    await p.engine.wait_until_idle(timeout=300)
    assert (await spinner.status())["output"] == {"attempt": 2}
    assert (await (await binding(p, "acme").get("a")).status())["status"] == "waiting"


async def test_dispatch_memory_cap_fails_the_attempt(make_project: Any, project_dir: Path) -> None:
    add_tenant(project_dir, "hog", "blob = bytearray(2 * 1024 * 1024 * 1024)")
    p = await make_project(limits=IsolateLimits(memory_mb=512))
    hog = await binding(p, "hog").create({"id": "h"})
    await p.engine.wait_until_idle(timeout=300)
    assert (await hog.status())["output"] == {"attempt": 2}
    st = p.engine.lookup("dynamic-workflow", '{"tenantId":"hog"}', "h")
    assert st.steps["do:risky#1"].attempts[0].error["name"] in (
        "MemoryError",
        "WorkflowInternalError",
    )


async def test_dispatch_eviction_mid_workflow_reloads_and_replays(make_project: Any) -> None:
    p = await make_project()
    await post(p, "acme", {"id": "e", "params": {"name": "eve"}})
    await p.engine.wait_until_idle(timeout=300)
    loader = p.loaders["LOADER"]
    assert loader.loaded() == ["acme"] and loader.loads == 1
    assert await loader.evict("acme")
    p.engine.clock.advance("1 hour")
    await p.engine.wait_until_idle(timeout=300)
    status = await (await binding(p, "acme").get("e")).status()
    assert status["output"] == {"tenant": "acme", "text": "HELLO EVE FROM ACME"}
    assert loader.loads == 2
    st = p.engine.lookup("dynamic-workflow", '{"tenantId":"acme"}', "e")
    assert st.steps["do:hello#1"].executions == 1 and st.steps["do:hello#1"].replays == 1


async def test_dispatch_lru_keeps_at_most_max_isolates(make_project: Any) -> None:
    p = await make_project(max_isolates=1, time=TimeControl(skip_sleeps=True))
    await post(p, "acme", {"id": "a", "params": {"name": "ann"}})
    await post(p, "globex", {"id": "g", "params": {"name": "gus"}})
    await p.engine.wait_until_idle(timeout=300)
    loader = p.loaders["LOADER"]
    live = [w for w in loader.loaded() if loader._workers[w]._isolate is not None]
    assert len(live) <= 1
    for tenant, id in (("acme", "a"), ("globex", "g")):
        assert (await (await binding(p, tenant).get(id)).status())["status"] == "complete"


# A tenant whose fetch answers after ``?s=SECONDS``.
SLOW = """
import asyncio

from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        await asyncio.sleep(float(request.url.rsplit("=", 1)[1]))
        return Response("done")
"""


async def test_dispatch_load_waiting_for_room_goes_on_when_an_isolate_goes_idle(
    make_project: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("slow", "next"):
        (project_dir / "tenants" / name).mkdir()
        (project_dir / "tenants" / name / "worker.py").write_text(SLOW)
    # No periodic look: only the isolate going idle can let the second load go on.
    monkeypatch.setattr(loader_module, "ROOM_POLL_S", 3600.0)
    p = await make_project(max_isolates=1)
    loader = p.loaders["LOADER"]
    first = asyncio.ensure_future(p.fetch(Request("http://localhost/slow/?s=0.5")))
    while loader._workers.get("slow") is None or loader._workers["slow"]._isolate is None:
        await asyncio.sleep(0.01)
    second = await asyncio.wait_for(p.fetch(Request("http://localhost/next/?s=0")), 60)
    assert second.status == 200 and (await first).status == 200
    assert [w for w in loader.loaded() if loader._workers[w]._isolate is not None] == ["next"]


async def test_dispatch_request_whose_load_an_eviction_cut_loads_again(
    make_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What LRU pressure does (max_isolates below the tenants busy now): another tenant's
    # pass takes the slot while this tenant's code loads for a request.
    real, cuts = WorkerStub.isolate, {"left": 2}

    async def isolate(self: WorkerStub) -> Any:
        if cuts["left"]:
            cuts["left"] -= 1
            raise PassInterrupted(f"worker {self.id!r} was evicted while loading")
        return await real(self)

    monkeypatch.setattr(WorkerStub, "isolate", isolate)
    p = await make_project()
    assert await post(p, "acme", {"id": "a", "params": {"name": "ann"}}) == {
        "id": "a",
        "tenant": "acme",
    }
    assert cuts["left"] == 0
    cuts["left"] = FETCH_LOAD_TRIES
    r = await p.fetch(Request("http://localhost/globex/start", method="POST", body="{}"))
    assert r.status == 503 and b"max_isolates" in r.body


MIXED = """
import asyncio
from workers import WorkflowEntrypoint
from workers.workflows import NonRetryableError


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        out = []
        for k in range(3):
            @step.do(f"seq {k}")
            async def seq():
                return k * 10

            out.append(await seq())

        @step.do("a", concurrent=True)
        async def a():
            return "a"

        @step.do("b", concurrent=True)
        async def b():
            return "b"

        out.append(await asyncio.gather(a(), b()))

        @step.do("flaky", config={"retries": {"limit": 2, "delay": 0}})
        async def flaky(ctx):
            if ctx["attempt"] < 3:
                raise RuntimeError(f"attempt {ctx['attempt']} fails")
            return ctx["attempt"]

        out.append(await flaky())
        await step.sleep("nap", "1 hour")

        @step.do("fatal")
        async def fatal():
            raise NonRetryableError("no")

        try:
            await fatal()
        except NonRetryableError as exc:
            out.append(f"caught {exc}")
        return out
"""


@pytest.mark.parametrize("mode", ["process", "process-no-spin", "inline"])
async def test_dispatch_step_paths_agree_in_and_out_of_isolates(
    make_project: Any, project_dir: Path, mode: str
) -> None:
    (project_dir / "tenants" / "mixed").mkdir()
    (project_dir / "tenants" / "mixed" / "worker.py").write_text(MIXED)
    p = await make_project(isolation="inline" if mode == "inline" else "process")
    loader = p.loaders["LOADER"]
    loader.spin = mode == "process"
    inst = await binding(p, "mixed").create({"id": "m"})
    await p.engine.wait_until_idle(timeout=300)
    p.engine.clock.advance("1 hour")
    await p.engine.wait_until_idle(timeout=300)
    status = await inst.status()
    assert status["output"] == [0, 10, 20, ["a", "b"], 3, "caught no"], status
    st = p.engine.lookup("dynamic-workflow", '{"tenantId":"mixed"}', "m")
    runs = {k: (s.executions, s.replays, len(s.attempts)) for k, s in st.steps.items()}
    # (executions, replays, attempts): passes end at each retry and at the sleep.
    assert runs == {
        "do:seq 0#1": (1, 3, 1),
        "do:seq 1#1": (1, 3, 1),
        "do:seq 2#1": (1, 3, 1),
        "do:a#1": (1, 3, 1),
        "do:b#1": (1, 3, 1),
        "do:flaky#1": (3, 1, 3),
        "sleep:nap:3600000#1": (0, 0, 0),
        "do:fatal#1": (1, 0, 1),
    }, runs
    if mode != "inline":
        iso = loader._workers["mixed"]._isolate
        assert iso is not None
        conn = iso.conn
        # Whether the engine spun with spin on needs an idle core (bench/dispatch.py
        # measures it); with spin off it never does, whatever the machine.
        if mode == "process-no-spin":
            assert conn.spins == 0
        assert conn.doorbell is not None and conn.doorbell.hint is False  # no pass runs now


TRACED = """
import os
import sys
import traceback

from workers import WorkflowEntrypoint

from helpers import fail


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do()
        async def where():
            try:
                fail()
            except ValueError:
                frame = traceback.extract_tb(sys.exc_info()[2])[-1]
                with open(frame.filename) as f:  # the module's file, as written
                    line = f.read().splitlines()[frame.lineno - 1].strip()
                home = os.path.dirname(frame.filename) == os.path.dirname(__file__)
                return [os.path.basename(frame.filename), frame.lineno, frame.line, line, home]

        return await where()
"""


async def test_dispatch_tenant_code_loaded_again_keeps_its_file_names_and_lines(
    make_project: Any, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The third load of the same sources gets the engine's compiled code (a source is
    # compiled once a second load sends it); tracebacks still name the tenant's files.
    monkeypatch.setattr(compiled_module, "COMPILE_DELAY_S", 0.0)
    folder = project_dir / "tenants" / "traced"
    folder.mkdir()
    (folder / "worker.py").write_text(TRACED)
    (folder / "helpers.py").write_text('def fail():\n    raise ValueError("here")\n')
    p = await make_project()
    loader = p.loaders["LOADER"]
    outputs = []
    for k in range(3):
        inst = await binding(p, "traced").create({"id": f"t{k}"})
        await p.engine.wait_until_idle(timeout=300)
        outputs.append((await inst.status())["output"])
        assert await loader.evict("traced")
        await asyncio.sleep(0.05)  # the engine compiles what a second load sent
    assert loader.loads == 3 and len(loader._compiled._data) == 2
    expected = ["helpers.py", 2, 'raise ValueError("here")', 'raise ValueError("here")', True]
    assert outputs == [expected] * 3


NESTED = """
class Tenant:
    def run(self):
        def inner():
            raise ValueError("here")

        return inner
"""


def _code_objects(code: Any) -> list[Any]:
    found = [code]
    for const in code.co_consts:
        if hasattr(const, "co_filename"):
            found += _code_objects(const)
    return found


@pytest.mark.parametrize(
    ("source", "path", "fast"),
    [
        # The usual case: the placeholder's bytes are replaced, no code object rebuilt.
        (NESTED, "/tmp/dynwf-isolate-1-x/worker.py", True),
        # The placeholder's text is also a constant of the module: renamed one by one.
        (f"NAME = {compiled_module.PLACEHOLDER!r}\n" + NESTED, "/tmp/i/worker.py", False),
        # A path marshal would not write as a short ASCII string: renamed one by one.
        (NESTED, "/tmp/\u00e9t\u00e9/worker.py", False),
        (NESTED, "/tmp/" + "d" * 300 + "/worker.py", False),
    ],
)
def test_dispatch_compiled_module_is_placed_under_the_isolates_file_name(
    source: str, path: str, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = compiled_module.CompiledModules()
    cache._pending[compiled_module._key("worker.py", source)] = source
    cache._compile_pending()
    (data,) = cache._data.values()
    if fast:  # the byte replacement alone must name every code object
        monkeypatch.setattr(compiled_module, "_renamed", None)
    code = compiled_module.placed(data, path)
    names = {c.co_filename for c in _code_objects(code)}
    assert names == {path} and len(_code_objects(code)) >= 4
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the module runs, its constants intact
    assert namespace.get("NAME", compiled_module.PLACEHOLDER) == compiled_module.PLACEHOLDER
    with pytest.raises(ValueError) as caught:
        namespace["Tenant"]().run()()
    assert caught.traceback[-1].frame.code.path == path  # what a traceback names


KINDS_MAIN = """
import json
import os

from workers import Response, WorkerEntrypoint

from lib.util import double


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        here = os.path.dirname(__file__)
        with open(os.path.join(here, "data.json")) as f:
            data = json.load(f)
        with open(os.path.join(here, "blob.bin"), "rb") as f:
            blob = f.read().hex()
        with open(os.path.join(here, "notes.txt")) as f:
            notes = f.read()
        try:
            with open(os.path.join(here, "worker.py"), "a") as f:
                f.write("# changed")
            wrote = "yes"
        except OSError as exc:
            wrote = type(exc).__name__
        return Response.json(
            {"n": double(data["n"]), "blob": blob, "notes": notes, "rewrote_own_code": wrote}
        )
"""


def sandbox_on() -> bool:
    """Whether isolates here get Landlock's filesystem view (this machine's kernel)."""
    from dynwf import sandbox

    if not sandbox.policy_from_env().on:
        return False
    return not any(m.protection in ("filesystem view", "all protections") for m in sandbox.probe())


async def test_dispatch_every_module_kind_is_there_for_the_tenant_to_read(
    make_project: Any,
) -> None:
    p = await make_project()
    loader = p.loaders["LOADER"]
    modules = {
        "worker.py": KINDS_MAIN,
        "lib/__init__.py": "",
        "lib/util.py": {"py": "def double(x):\n    return 2 * x\n"},
        "data.json": {"json": {"n": 21}},
        "blob.bin": {"data": b"\x00\xff"},
        "notes.txt": {"text": "hello"},
    }
    code = JsObject({"mainModule": "worker.py", "modules": JsObject(modules)})
    stub = loader.get("kinds", create_proxy(lambda: code))
    r = await stub.getEntrypoint().fetch(Request("http://localhost/").js_object)
    out = json.loads(r.body)
    assert r.status == 200 and out["n"] == 42 and out["blob"] == "00ff"
    assert out["notes"] == "hello"
    # The engine writes the modules; the isolate only reads them (the sandbox's view).
    assert out["rewrote_own_code"] == ("yes" if not sandbox_on() else "PermissionError")


async def test_dispatch_module_name_outside_the_worker_is_refused(make_project: Any) -> None:
    p = await make_project()
    loader = p.loaders["LOADER"]
    code = JsObject(
        {"mainModule": "worker.py", "modules": JsObject({"worker.py": "", "../evil.py": "x = 1"})}
    )
    stub = loader.get("dots", create_proxy(lambda: code))
    with pytest.raises(ValidationError, match=r"'\.\./evil\.py' must be a relative path"):
        await stub.getEntrypoint().fetch(Request("http://localhost/").js_object)


async def test_dispatch_tenant_writing_to_fd_1_does_not_touch_the_message_stream(
    make_project: Any, project_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    add_tenant(project_dir, "noisy", 'os.write(1, b"raw to fd 1\\n"); print("printed")')
    p = await make_project()
    noisy = await binding(p, "noisy").create({"id": "n"})
    await p.engine.wait_until_idle(timeout=300)
    assert (await noisy.status())["output"] == {"attempt": 1}
    err = capfd.readouterr().err
    assert "raw to fd 1" in err and "printed" in err


async def _until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_dispatch_spinning_waits_for_an_idle_core(
    make_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The machine's real load is bench/dispatch.py's business (scenario "cores"); here
    # the watchdog reads a runnable-thread count the test sets, on a 2-core pool.
    runnable = {"threads": 0}
    monkeypatch.setattr(isolate_module, "_runnable", lambda: runnable["threads"])
    p = await make_project()
    await post(p, "acme", {"id": "a", "params": {"name": "ann"}})
    await p.engine.wait_until_idle(timeout=300)
    pool = p.loaders["LOADER"]._pool
    pool._cores = 2
    await _until(lambda: pool.idle_core)  # the spare has booted; nothing else runs
    boot = asyncio.create_task(pool._boot())
    await asyncio.sleep(0)
    assert not pool.idle_core  # an interpreter start wants the core
    await discard(await boot)
    await _until(lambda: pool.idle_core)
    runnable["threads"] = 3  # more threads want to run than there are cores
    await _until(lambda: not pool.idle_core)  # the watchdog saw the crowd
    runnable["threads"] = 2  # the engine and a spinning isolate: no crowd
    await _until(lambda: pool.idle_core)
    pool._cores = 1
    assert not pool.idle_core  # nobody spins on a single core


async def test_dispatch_a_fresh_pass_begins_its_first_step_without_asking(
    make_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pass with nothing journaled knows its first step.do's answer: the isolate begins
    # it at once and tells the engine one way ("granted"). A later pass (a replay after
    # the sleep) asks, as every other step does.
    from dynwf.dispatch import _protocol

    calls: list[tuple[str, bool]] = []
    check = _protocol.check

    def spy(msg: dict[str, Any], bindings: Any) -> str | None:
        if msg.get("op") == "host":
            calls.append((f"{msg['method']} {msg['args'][0]}", msg.get("id") is not None))
        return check(msg, bindings)

    monkeypatch.setattr(_protocol, "check", spy)
    p = await make_project()
    await post(p, "acme", {"id": "g1", "params": {"name": "ann"}})
    await p.engine.wait_until_idle(timeout=300)
    first = list(calls)
    assert first[0] == ("granted do:hello#1", False)  # one way: no round trip
    assert ("do_begin do:hello#1", True) not in first
    p.engine.clock.advance("1 hour")
    await p.engine.wait_until_idle(timeout=300)
    later = calls[len(first) :]
    assert not any(c.startswith("granted") for c, _ in later)
    assert ("do_begin do:hello#1", True) in later and ("do_begin do:shout#1", True) in later
    status = await (await binding(p, "acme").get("g1")).status()
    assert status["output"]["text"] == "HELLO ANN FROM ACME"
    (st,) = [st for st in p.engine.all_states() if st.id == "g1"]
    assert [len(s.attempts) for s in st.steps.values() if s.kind == "do"] == [1, 1]


def test_dispatch_protocol_takes_granted_one_way_only() -> None:
    from dynwf.dispatch import _protocol

    msg = {"op": "host", "run": "r1", "method": "granted", "args": ["do:a#1", "a", 1, None]}
    assert _protocol.check(msg, ()) is None
    assert "one way" in (_protocol.check({**msg, "id": 3}, ()) or "")
