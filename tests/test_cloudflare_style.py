"""A dispatcher written in Cloudflare's own Python runs unchanged under dynwf.

The fixture ``project_cloudflare_style`` is written as Cloudflare's Python Worker Loader
example and the Python ``dynamic_workflows`` library are (``to_js``, ``create_proxy``,
``getEntrypoint``, ``request.js_object``, ``DynamicWorkflowBinding`` exported), with two
tenants read from the ``TENANT_CODE`` KV namespace. It runs here under ``dynwf dev``
(HTTP), ``dynwf run --crash-at`` and the pytest plugin, and in process for the details.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynwf.engine import ManualClock
from dynwf.project import Project, reload_now
from dynwf.project._kv import TenantCodeNamespace
from dynwf.project._tenant_code import tenant_code_entries
from dynwf.workers import Request, install

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "project_cloudflare_style"
pytestmark = pytest.mark.slow


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    return root


def dynwf(project: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def version(project: Path, tenant: str) -> str:
    manifest = json.loads(tenant_code_entries(project)[f"{tenant}/_manifest.json"])
    return str(manifest["version"])


# -- the three ways in ---------------------------------------------------------------


def test_cloudflare_style_project_checks_pass_through_the_pytest_plugin(project_dir: Path) -> None:
    done = dynwf(project_dir, "pytest", "-q", "-W", "error", "-p", "no:cacheprovider", timeout=110)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout, done.stdout[-1000:]


def test_cloudflare_style_dispatcher_under_run_with_a_crash(project_dir: Path) -> None:
    done = dynwf(
        project_dir,
        "dynwf", "run", "--json", "--tenant", "alpha", "--metadata", '{"tenant": "alpha"}',
        "--params", '{"amount": 12}', "--crash-at", "charge:during", "--skip-retry-delays",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "complete" and report["processes"] == 2  # killed once
    out = report["output"]
    # The attempt the crash cut off counts as failed; the next one succeeds.
    assert out["charge"] == {"amount": 12, "attempt": 2}
    assert out["lookup_error"] == ["JsException", "KeyError"]
    assert out["keys"] == ["instanceId", "payload", "timestamp"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dev(project_dir: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = project_dir / "dev.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dynwf", "dev", "--port", str(port)],
            cwd=project_dir,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while "serving" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def poll_status(client: httpx.Client, url: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # a hang guard only
    while True:
        got: dict[str, Any] = client.get(url).json()
        if got.get("status") == status or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_cloudflare_style_dispatcher_under_dev_over_http(dev: tuple[str, Path]) -> None:
    base, log = dev
    with httpx.Client(base_url=base, timeout=30) as client:
        a = client.post("/alpha/start", json={"id": "order-1", "params": {"amount": 3}})
        b = client.post("/beta/start", json={"id": "order-1", "params": {"name": "bo"}})
        assert (a.status_code, a.json()) == (201, {"id": "order-1", "tenant": "alpha"})
        assert (b.status_code, b.json()) == (201, {"id": "order-1", "tenant": "beta"})
        alpha = poll_status(client, "/alpha/status/order-1", "complete")
        beta = poll_status(client, "/beta/status/order-1", "complete")
        assert client.get("/gamma/status/order-1").status_code == 404
    assert alpha["output"]["tenant"] == "alpha" and alpha["output"]["charge"]["amount"] == 3
    assert alpha["output"]["naive_timestamp"] is True
    assert beta["output"] == {"tenant": "beta", "text": "BETA GREETS BO", "id": "order-1"}
    # dynwf keeps the two tenants' "order-1" apart; Cloudflare would not: the log says so.
    assert "'order-1' is already used by another tenant" in log.read_text()


# -- in process ----------------------------------------------------------------------


@pytest.fixture
async def project(project_dir: Path) -> AsyncIterator[Project]:
    p = Project.load(project_dir, clock=ManualClock())
    await p.start()
    yield p
    await p.stop()


async def post(p: Project, path: str, body: Any) -> Any:
    request = Request(f"http://localhost{path}", method="POST", body=json.dumps(body))
    return await p.fetch(request)


async def status(p: Project, tenant: str, id: str) -> dict[str, Any]:
    r = await p.fetch(Request(f"http://localhost/{tenant}/status/{id}"))
    assert r.status == 200, r.body
    got: dict[str, Any] = json.loads(r.body)
    return got


async def test_a_save_moves_a_versioned_tenant_to_its_new_code(project: Project) -> None:
    old = version(project.root, "beta")
    await post(project, "/beta/start", {"id": "b", "params": {"name": "ann"}})
    await project.engine.wait_until_idle(timeout=30)  # asleep after greet
    loader = project.loaders["LOADER"]
    assert loader.loaded() == [f"beta:{old}"]

    worker = project.root / "tenants" / "beta" / "worker.py"
    worker.write_text(worker.read_text().replace("greet.upper()", "greet.upper() + '!'"))
    new = version(project.root, "beta")
    result = await reload_now(project, (str(worker),))
    assert result.workers == {f"beta:{new}": None}
    assert loader.loaded() == [f"beta:{new}"]

    project.engine.clock.advance("1 second")  # type: ignore[attr-defined]
    await project.engine.wait_until_idle(timeout=30)
    assert (await status(project, "beta", "b"))["output"]["text"] == "BETA GREETS ANN!"
    assert loader.loaded() == [f"beta:{new}"]  # the dispatcher found it loaded


async def test_a_broken_save_parks_and_the_fix_resumes(project: Project) -> None:
    await post(project, "/beta/start", {"id": "b", "params": {"name": "ann"}})
    await project.engine.wait_until_idle(timeout=30)
    worker = project.root / "tenants" / "beta" / "worker.py"
    good = worker.read_text()
    worker.write_text(good.replace("async def shout(greet):", "async def shout(greet)"))
    broken = await reload_now(project, (str(worker),))
    assert list(broken.workers) == [f"beta:{version(project.root, 'beta')}"]
    assert "SyntaxError" in (next(iter(broken.workers.values())) or "")
    project.engine.clock.advance("1 second")  # type: ignore[attr-defined]
    await project.engine.wait_until_idle(timeout=30)
    assert (await status(project, "beta", "b"))["status"] == "waiting"  # parked

    worker.write_text(good.replace("greet.upper()", "greet.upper() + '?'"))
    fixed = await reload_now(project, (str(worker),))
    assert fixed.ok and fixed.unparked == 1
    await project.engine.wait_until_idle(timeout=30)
    assert (await status(project, "beta", "b"))["output"]["text"] == "BETA GREETS ANN?"


async def test_a_dispatcher_that_does_not_export_the_binding_class_fails_as_on_cloudflare(
    project_dir: Path,
) -> None:
    entry = project_dir / "src" / "entry.py"
    entry.write_text(
        entry.read_text().replace(
            '__all__ = ["Default", "DynamicWorkflow", "DynamicWorkflowBinding"]',
            '__all__ = ["Default", "DynamicWorkflow"]',
        )
    )
    p = Project.load(project_dir, clock=ManualClock())
    await p.start()
    try:
        with pytest.raises(RuntimeError, match="`DynamicWorkflowBinding` is not registered on"):
            await post(p, "/alpha/start", {"id": "x", "params": {"amount": 1}})
    finally:
        await p.stop()


async def test_ctx_exports_make_the_binding_a_tenant_gets(project: Project) -> None:
    install()
    from js import Object
    from pyodide.ffi import to_js

    props = {"props": {"bindingName": "WORKFLOWS", "metadata": {"tenant": "alpha"}}}
    binding = project.exports.DynamicWorkflowBinding(
        to_js(props, dict_converter=Object.fromEntries)
    )
    await binding.create({"id": "via-exports", "params": {"amount": 5}})
    await project.engine.wait_until_idle(timeout=30)
    assert (await status(project, "alpha", "via-exports"))["output"]["charge"]["amount"] == 5


async def test_two_tenants_reusing_an_id_is_logged(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="dynwf.dispatch"):
        await post(project, "/alpha/start", {"id": "same", "params": {"amount": 1}})
        assert "already used by another tenant" not in caplog.text
        await post(project, "/beta/start", {"id": "same", "params": {"name": "x"}})
    assert "'same' is already used by another tenant of workflow 'dynamic-workflow'" in caplog.text


# -- TENANT_CODE ---------------------------------------------------------------------


async def test_tenant_code_entries_follow_the_contract(project_dir: Path) -> None:
    entries = tenant_code_entries(project_dir)
    assert sorted(entries) == [
        "alpha/_manifest.json", "alpha/routes.py", "alpha/worker.py",
        "beta/_manifest.json", "beta/routes.py", "beta/worker.py",
    ]  # fmt: skip
    manifest = json.loads(entries["alpha/_manifest.json"])
    assert manifest["mainModule"] == "worker.py"
    assert manifest["modules"] == ["routes.py", "worker.py"]
    assert len(manifest["version"]) == 16
    assert entries["alpha/worker.py"] == (project_dir / "tenants/alpha/worker.py").read_text()

    kv = TenantCodeNamespace(project_dir)
    assert await kv.get("alpha/_manifest.json", "json") == manifest
    assert await kv.get("alpha/nothing.py") is None and await kv.get("gamma/worker.py") is None
    assert [k.name for k in (await kv.list()).keys] == sorted(entries)

    (project_dir / "tenants/alpha/rates.json").write_text('{"eur": 1}')
    again = json.loads(tenant_code_entries(project_dir)["alpha/_manifest.json"])
    assert again["modules"] == ["rates.json", "routes.py", "worker.py"]
    assert again["version"] != manifest["version"]  # a changed tenant is a new loader id


# -- dynwf's older dispatcher names: one more release, with a warning ------------------

OLD_ENTRY = """
from pathlib import Path

from workers import Response, WorkerEntrypoint

from dynwf.dispatch import create_dynamic_workflow_entrypoint, wrap_workflow_binding

TENANTS = Path(__file__).resolve().parent.parent / "tenants"


def code(tenant, env):
    return {
        "compatibilityDate": "2026-04-01",
        "mainModule": "worker.py",
        "modules": {p.name: p.read_text() for p in sorted((TENANTS / tenant).glob("*.py"))},
        "env": {"TENANT_ID": tenant, "WORKFLOWS": wrap_workflow_binding({"tenant": tenant}, env=env)},
    }


def load_runner(ctx):
    stub = ctx["env"].LOADER.get(ctx["metadata"]["tenant"], lambda: code(ctx["metadata"]["tenant"], ctx["env"]))
    return stub.get_entrypoint("TenantWorkflow")


DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        tenant = request.url.split("://", 1)[-1].split("/")[1]
        stub = self.env.LOADER.get(tenant, lambda: code(tenant, self.env))
        return await stub.get_entrypoint().fetch(request)
"""


async def test_the_old_dispatcher_form_still_runs_with_deprecation_warnings(
    project_dir: Path,
) -> None:
    (project_dir / "src" / "entry.py").write_text(OLD_ENTRY)
    p = Project.load(project_dir, clock=ManualClock(), isolation="inline")
    with pytest.warns(DeprecationWarning) as caught:
        await p.start()
        try:
            r = await post(p, "/alpha/start", {"id": "old", "params": {"amount": 4}})
            assert r.status == 201, r.body
            await p.engine.wait_until_idle(timeout=30)
            assert (await status(p, "alpha", "old"))["output"]["charge"]["amount"] == 4
        finally:
            await p.stop()
    said = "\n".join(str(w.message) for w in caught)
    for new_form in (
        "create_dynamic_workflow_entrypoint(load_runner) from dynamic_workflows",
        "wrap_workflow_binding(metadata, binding_name=...) with no env=",
        "env.LOADER.get(id, create_proxy(get_code))",
        "return to_js({...}, dict_converter=Object.fromEntries)",
        "stub.getEntrypoint(name)",
        "entrypoint.fetch(request.js_object)",
    ):
        assert new_form in said, new_form


def test_step_errors_reach_run_as_cloudflare_rebuilds_them() -> None:
    from dynwf.compat.pyodide_ffi import JsException
    from dynwf.engine import error_to_dict
    from dynwf.workers._errors import error_as_on_cloudflare
    from dynwf.workers.workflows import NonRetryableError

    for name, cls in (("TypeError", TypeError), ("ValueError", ValueError)):
        assert type(error_as_on_cloudflare({"name": name, "message": "m"})) is cls
    assert isinstance(
        error_as_on_cloudflare({"name": "NonRetryableError", "message": "m"}), NonRetryableError
    )
    for name in ("KeyError", "GatewayUnavailable", "WorkflowTimeoutError"):
        exc = error_as_on_cloudflare({"name": name, "message": "m"})
        assert type(exc) is JsException and exc.name == name
        # run() letting it through records the original name, not "JsException"
        assert error_to_dict(exc) == {"name": name, "message": "m"}


def test_the_tenant_event_is_a_dict_whose_attributes_name_the_portable_form() -> None:
    from datetime import UTC, datetime

    from dynwf.workers._event import tenant_event

    event = tenant_event({"a": 1}, datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "i-1")
    assert event == {
        "payload": {"a": 1},
        "timestamp": datetime(2026, 1, 2, 3, 4),
        "instanceId": "i-1",
    }
    assert isinstance(event, dict) and event["timestamp"].tzinfo is None
    with pytest.raises(AttributeError, match=r'use event\["instanceId"\]'):
        event.instanceId  # noqa: B018
    assert not hasattr(event, "workflowName")
