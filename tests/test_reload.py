"""Hot reload: tenant and dispatcher edits reach running instances; broken code parks them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dynwf.dispatch import tenant_binding
from dynwf.engine import ManualClock
from dynwf.project import Project, ReloadResult, reload_now, watch
from dynwf.workers import Request

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = pytest.mark.slow


@pytest.fixture
async def project(tmp_path: Path) -> AsyncIterator[Project]:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    p = Project.load(root, clock=ManualClock())
    await p.start()
    yield p
    await p.stop()


def acme(p: Project) -> Path:
    return p.root / "tenants" / "acme" / "worker.py"


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


async def start(p: Project, id: str) -> Any:
    b = tenant_binding(p.env, {"tenantId": "acme"})
    inst = await b.create({"id": id, "params": {"name": "ann"}})
    await p.engine.wait_until_idle(timeout=300)
    return inst


async def finish(p: Project) -> None:
    p.engine.clock.advance("1 hour")  # type: ignore[attr-defined]
    await p.engine.wait_until_idle(timeout=300)


async def test_reload_watcher_picks_up_a_save_mid_workflow(project: Project) -> None:
    inst = await start(project, "w")
    results: list[ReloadResult] = []
    seen = asyncio.Event()
    stop = asyncio.Event()

    def on_reload(r: ReloadResult) -> None:
        results.append(r)
        seen.set()

    task = asyncio.create_task(watch(project, on_reload, stop=stop))
    edit(acme(project), "return hello.upper()", "return hello.upper() + '!!'")
    saved = acme(project).read_text()
    # The watcher arms at some point after the task starts; save again until it has.
    deadline = asyncio.get_running_loop().time() + 300  # a hang guard
    while not seen.is_set():
        assert asyncio.get_running_loop().time() < deadline, "no reload seen"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(seen.wait(), 1.0)
        acme(project).write_text(saved)
    stop.set()
    await task
    assert results[0].workers == {"acme": None} and str(acme(project)) in results[0].files
    await finish(project)
    assert (await inst.status())["output"]["text"] == "HELLO ANN FROM ACME!!"


async def test_reload_moves_a_running_pass_at_its_next_step(
    project: Project, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    edit(
        acme(project),
        '            return greeting(event["payload"]["name"])',
        f"            import asyncio, os\n            while not os.path.exists({str(gate)!r}):\n"
        '                await asyncio.sleep(0.01)\n            return greeting(event["payload"]["name"])',
    )
    b = tenant_binding(project.env, {"tenantId": "acme"})
    inst = await b.create({"id": "r", "params": {"name": "ann"}})
    while (
        "do:hello#1"
        not in project.engine.lookup("dynamic-workflow", '{"tenantId":"acme"}', "r").steps
    ):
        await asyncio.sleep(0.01)
    edit(acme(project), "return hello.upper()", "return 'v2:' + hello")
    edit(acme(project), 'await step.sleep("rest", "1 hour")', "pass")
    result = await reload_now(project)
    assert result.workers == {"acme": None}
    gate.touch()
    await project.engine.wait_until_idle(timeout=300)
    assert (await inst.status())["output"]["text"] == "v2:hello ann from acme"
    st = project.engine.lookup("dynamic-workflow", '{"tenantId":"acme"}', "r")
    assert st.steps["do:hello#1"].executions == 1  # the in-flight attempt finished; not re-run


async def test_reload_syntax_error_keeps_last_good_and_parks_instances(project: Project) -> None:
    first = await start(project, "before")
    acme(project).write_text(acme(project).read_text() + "\ndef broken(:\n")
    result = await reload_now(project)
    error = result.workers["acme"]
    assert error is not None and "SyntaxError" in error and "worker.py:" in error
    line = len(acme(project).read_text().splitlines())
    assert f"worker.py:{line}" in error
    r = await project.fetch(
        Request(
            "http://x/acme/start",
            method="POST",
            body=json.dumps({"id": "during", "params": {"name": "bo"}}),
        )
    )
    assert r.status == 200  # the last good version still answers requests
    await project.engine.wait_until_idle(timeout=300)
    during = await tenant_binding(project.env, {"tenantId": "acme"}).get("during")
    assert (await during.status())["status"] == "waiting"  # parked, not errored
    await finish(project)
    assert (await first.status())["status"] == "waiting"
    acme(project).write_text(acme(project).read_text().replace("\ndef broken(:\n", ""))
    result = await reload_now(project)
    assert result.ok and result.unparked >= 1
    await project.engine.wait_until_idle(timeout=300)
    await finish(project)
    assert (await first.status())["status"] == "complete"
    assert (await during.status())["output"]["text"] == "HELLO BO FROM ACME"


async def test_reload_that_breaks_replay_warns_with_instance_and_steps(project: Project) -> None:
    inst = await start(project, "div")
    edit(acme(project), "        async def hello():", "        async def greet():")
    edit(acme(project), "text = await hello()", "text = await greet()")
    edit(
        acme(project),
        "async def shout(hello):\n            return hello.upper()",
        "async def shout(greet):\n            return greet.upper()",
    )
    assert (await reload_now(project)).ok
    await finish(project)
    st = project.engine.lookup("dynamic-workflow", '{"tenantId":"acme"}', "div")
    assert st.warnings and "'div'" in st.warnings[0].message
    assert st.warnings[0].missing == ["do:hello#1"] and "do:greet#1" in st.warnings[0].ran
    assert (await inst.status())["status"] in ("complete", "waiting")


async def test_reload_dispatcher_change_serves_next_request(project: Project) -> None:
    entry = project.root / "src" / "entry.py"
    edit(
        entry,
        "            return Response(str(exc), status=404)",
        "            return Response('no such tenant (v2)', status=404)",
    )
    result = await reload_now(project, (str(entry),))
    assert result.dispatcher_error is None
    r = await project.fetch(Request("http://x/nobody/start", method="POST", body="{}"))
    assert (r.status, r.body) == (404, b"no such tenant (v2)")
    edit(entry, "class Default(", "class Default(:")
    result = await reload_now(project, (str(entry),))
    assert result.dispatcher_error and "entry.py" in result.dispatcher_error
    r = await project.fetch(Request("http://x/nobody/start", method="POST", body="{}"))
    assert r.body == b"no such tenant (v2)"  # the last good dispatcher keeps serving


async def test_reload_of_one_tenant_leaves_the_others_loaded_as_they_are(project: Project) -> None:
    await start(project, "a")
    globex = tenant_binding(project.env, {"tenantId": "globex"})
    await globex.create({"id": "g", "params": {"name": "gus"}})
    await project.engine.wait_until_idle(timeout=300)
    loader = project.loaders["LOADER"]
    before = loader._workers["globex"]._isolate
    assert sorted(loader.loaded()) == ["acme", "globex"] and before is not None
    edit(acme(project), "hello.upper()", "hello.title()")
    result = await reload_now(project, (str(acme(project)),))
    assert result.workers == {"acme": None}  # globex's code did not change: not reloaded
    assert loader._workers["globex"]._isolate is before
