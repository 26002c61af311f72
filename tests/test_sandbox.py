"""Issue 12: a hostile tenant touches only what a Worker could, with real isolate processes.

Each attack runs in a step and in the tenant's ``fetch``, and fails with a sandbox error
while a neighbour tenant keeps being served; ``fetch`` goes out only through the engine,
as ``globalOutbound`` says; where the kernel lacks user namespaces (simulated for real
with ``max_user_namespaces=0``) dynwf says so at start, and ``--sandbox=require`` stops.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from dynwf import sandbox
from dynwf.dispatch import tenant_binding
from dynwf.dispatch._outbound import NO_INTERNET
from dynwf.engine import ManualClock
from dynwf.project import Project
from dynwf.testing._project import ProjectHarness

FIXTURE = Path(__file__).parent / "fixtures" / "project_sandbox"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux's"),
]
ATTACKS = [
    "read_journal", "read_journal_raw", "write_neighbour_code", "write_dispatcher",
    "list_project", "signal_engine", "signal_engine_raw", "engine_environ", "engine_memory",
    "env_secret", "connect_engine", "socket_raw", "spawn", "fork", "fork_raw", "write_tmp",
    "big_file", "write_dispatcher_raw", "engine_environ_raw", "network_namespace", "environ",
    "thread", "thread_pool",
]  # fmt: skip
# All a tenant's environment may hold: the locale (as the sandbox's start leaves it).
LOCALE = {"LANG", "LC_ALL", "LC_CTYPE", "TZ"}
# What each attack must meet: the sandbox's own message (Python-level calls) or the
# kernel's refusal (calls made past Python, through ctypes).
SANDBOX = "dynwf sandbox: "
EXPECTED: dict[str, tuple[str, str | int]] = {
    "read_journal": ("PermissionError", SANDBOX + "a Worker cannot read"),
    "read_journal_raw": ("PermissionError", 13),  # EACCES from Landlock
    "write_neighbour_code": ("PermissionError", SANDBOX + "a Worker cannot write"),
    "write_dispatcher": ("PermissionError", SANDBOX + "a Worker cannot write"),
    "list_project": ("PermissionError", 13),
    "signal_engine": ("PermissionError", SANDBOX + "a Worker cannot signal"),
    "signal_engine_raw": ("PermissionError", 1),  # EPERM from seccomp
    "engine_environ": ("PermissionError", SANDBOX + "a Worker cannot read"),
    "engine_memory": ("PermissionError", SANDBOX + "a Worker cannot read"),
    "connect_engine": ("PermissionError", SANDBOX + "a Worker cannot open sockets"),
    "socket_raw": ("PermissionError", 1),
    "spawn": ("PermissionError", SANDBOX + "a Worker cannot start processes"),
    "fork": ("PermissionError", SANDBOX + "a Worker cannot start processes"),
    "fork_raw": ("PermissionError", 1),
    "write_tmp": ("PermissionError", SANDBOX + "a Worker cannot write"),
    "big_file": ("OSError", 27),  # EFBIG: past MAX_FILE_BYTES, even in an allowed folder
    "write_dispatcher_raw": ("PermissionError", 13),
    "engine_environ_raw": ("PermissionError", 13),
    # Pyodide's own error: Python Workers have no threads
    "thread": ("RuntimeError", "can't start new thread (" + SANDBOX),
    "thread_pool": ("RuntimeError", "can't start new thread (" + SANDBOX),
}


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    return root


@pytest.fixture
def allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The one folder tenants may write (DYNWF_SANDBOX_ALLOW), and a secret in the engine's
    environment that no tenant may see."""
    folder = tmp_path / "allowed"
    folder.mkdir()
    monkeypatch.setenv("DYNWF_SANDBOX", "auto")
    monkeypatch.setenv("DYNWF_SANDBOX_ALLOW", str(folder))
    monkeypatch.setenv("DYNWF_TEST_SECRET", "hunter2")
    return folder


@pytest.fixture
async def project(project_dir: Path, allowed: Path) -> AsyncIterator[Project]:
    p = Project.load(project_dir, clock=ManualClock())
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


def targets(p: Project, allowed: Path) -> dict[str, Any]:
    root = p.root
    return {
        "journal": str(p.state_dir / "journal.duckdb"),
        "neighbour_code": str(root / "tenants" / "neighbour" / "worker.py"),
        "dispatcher": str(root / "src" / "entry.py"),
        "project": str(root),
        "port": 8787,
        "allowed": str(allowed),
    }


def check(results: dict[str, Any], where: str) -> None:
    assert set(results) == set(ATTACKS), where
    assert results["env_secret"] == {"ok": "None"}, f"{where}: the engine's secret leaked"
    # nothing of the engine's or the isolate's own settings either, forked or spawned
    names = set(results["environ"]["ok"].strip("'").split())
    assert names <= LOCALE, f"{where}: a tenant's environment holds {sorted(names)}"
    # its own network namespace: nothing to connect to even past the socket() refusal
    engine_net = os.readlink("/proc/self/ns/net")
    assert results["network_namespace"]["ok"] not in (repr(engine_net), None), results
    for name, (error, expected) in EXPECTED.items():
        got = results[name]
        assert got.get("error") == error, f"{where}: {name} got {got}"
        if isinstance(expected, int):
            assert got["errno"] == expected, f"{where}: {name} got {got}"
        else:
            assert got["message"].startswith(expected), f"{where}: {name} got {got}"


async def neighbour_is_served(p: Project, id: str) -> None:
    inst = await tenant_binding(p.env, {"tenantId": "neighbour"}).create(
        {"id": id, "params": {"name": "Ada"}}
    )
    await p.engine.wait_until_idle(timeout=120)
    status = await inst.status()
    assert status["status"] == "complete", status
    assert status["output"] == {"tenant": "neighbour", "text": "hello Ada"}
    harness = _harness(p)
    response = await harness.fetch("/neighbour/")
    assert response.status == 200 and response.body == b"neighbour neighbour serving"


def _harness(p: Project) -> ProjectHarness:
    h = ProjectHarness.__new__(ProjectHarness)
    h.project = p
    return h


def test_sandbox_is_complete_on_this_machine() -> None:
    """The rest of this file needs every protection; a kernel without one fails here,
    naming it, instead of passing for the wrong reason."""
    assert sandbox.probe() == ()


async def test_hostile_tenant_in_a_step_is_refused_and_the_neighbour_is_served(
    project: Project, project_dir: Path, allowed: Path
) -> None:
    before = (project_dir / "tenants" / "neighbour" / "worker.py").read_text()
    inst = await tenant_binding(project.env, {"tenantId": "evil"}).create(
        {"id": "evil-1", "params": {"attacks": ATTACKS, "target": targets(project, allowed)}}
    )
    await project.engine.wait_until_idle(timeout=300)
    status = await inst.status()
    assert status["status"] == "complete", status
    check(status["output"], "in a step")
    assert (project_dir / "tenants" / "neighbour" / "worker.py").read_text() == before
    assert not Path("/tmp/dynwf-evil-was-here").exists()
    await neighbour_is_served(project, "n-1")


async def test_hostile_tenant_in_fetch_is_refused_and_the_neighbour_is_served(
    project: Project, allowed: Path
) -> None:
    response = await _harness(project).fetch(
        "/evil/", method="POST", json={"attacks": ATTACKS, "target": targets(project, allowed)}
    )
    assert response.status == 200, response.body
    check(json.loads(response.body), "in fetch")
    await neighbour_is_served(project, "n-2")


# -- outbound fetch through the engine ------------------------------------------------


class _Hello(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        body = b"hello from the internet, you said " + self.rfile.read(size)
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def internet() -> Iterator[str]:
    """An HTTP server the engine can reach (and an isolate cannot, but through fetch)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hi"
    finally:
        server.shutdown()
        server.server_close()


async def _fetch_in_step(p: Project, tenant: str, url: str) -> Any:
    inst = await tenant_binding(p.env, {"tenantId": tenant}).create(
        {"id": f"{tenant}-fetch", "params": {"url": url}}
    )
    await p.engine.wait_until_idle(timeout=120)
    status = await inst.status()
    assert status["status"] == "complete", status
    return status["output"]


async def test_fetch_is_refused_when_global_outbound_is_null(
    project: Project, internet: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dynwf.outbound")
    # What Cloudflare's Python SDK raises: pyfetch turns workerd's Error into OSError.
    expected = {"error": "OSError", "message": NO_INTERNET}
    assert await _fetch_in_step(project, "closed", internet) == expected
    response = await _harness(project).fetch("/closed/", method="POST", json={"url": internet})
    assert json.loads(response.body) == expected
    assert any("closed fetch POST" in r.getMessage() and "refused" in r.getMessage()
               for r in caplog.records)  # fmt: skip


async def test_fetch_is_routed_to_the_global_outbound_service_binding(
    project: Project, internet: str
) -> None:
    out = await _fetch_in_step(project, "routed", internet)
    assert out["status"] == 200
    assert json.loads(out["text"]) == {
        "via": "gateway", "tenant": "routed", "url": internet, "method": "POST", "body": "ping"
    }  # fmt: skip


async def test_fetch_reaches_the_internet_through_the_engine_when_unrestricted(
    project: Project, internet: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "dynwf.outbound")
    out = await _fetch_in_step(project, "open", internet)
    assert out == {"status": 200, "text": "hello from the internet, you said ping"}
    response = await _harness(project).fetch("/open/", method="POST", json={"url": internet})
    assert json.loads(response.body)["text"] == "hello from the internet, you said ping"
    assert any(f"open fetch POST {internet} -> 200" in r.getMessage() for r in caplog.records)


# -- what dynwf says at start -----------------------------------------------------------


def _run_without_userns(project_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dynwf run`` where the kernel refuses user namespaces: the test's own user
    namespace sets ``user.max_user_namespaces`` to 0 for everything inside it."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux unshare to take user namespaces away")
    inner = f"echo 0 > /proc/sys/user/max_user_namespaces && exec {sys.executable} -m dynwf"
    return subprocess.run(
        ["unshare", "-Urm", "sh", "-c", inner + ' "$@"', "sh", "run", *args],
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_run_says_at_start_which_protections_are_off_without_user_namespaces(
    project_dir: Path,
) -> None:
    done = _run_without_userns(project_dir, "--tenant", "neighbour", "--params", '{"name":"x"}')
    assert done.returncode == 0, done.stderr
    notice = "sandbox: these protections are off on this machine"
    assert done.stderr.count(notice) == 1, done.stderr
    assert "network namespace (no user namespaces" in done.stderr


def test_run_with_sandbox_require_stops_without_user_namespaces(project_dir: Path) -> None:
    done = _run_without_userns(project_dir, "--tenant", "neighbour", "--sandbox", "require")
    assert done.returncode == 1
    assert "--sandbox=require: these protections are not available here" in done.stderr
    assert "network namespace" in done.stderr


def test_sandbox_off_is_said_once_at_start(project_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", "run", "--tenant", "neighbour", "--params",
         '{"name":"x"}', "--sandbox", "off"],
        cwd=project_dir, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("sandbox off (--sandbox=off)") == 1, done.stderr


def test_startup_notice_names_what_is_missing_and_require_refuses() -> None:
    missing = (sandbox.Missing("filesystem view", "no Landlock in this kernel (Linux 5.13+)"),)
    notice = sandbox.startup_notice(sandbox.Policy("auto"), missing)
    assert notice is not None and "filesystem view (no Landlock" in notice
    with pytest.raises(sandbox.SandboxUnavailableError, match="filesystem view"):
        sandbox.startup_notice(sandbox.Policy("require"), missing)
    assert sandbox.startup_notice(sandbox.Policy("auto"), ()) is None


def test_protocol_allows_an_outbound_request_and_nothing_shaped_otherwise() -> None:
    from dynwf.dispatch._protocol import check

    request = {"url": "https://example.com/", "method": "GET", "headers": {}, "body": ""}
    assert check({"op": "outbound", "id": 1, "request": request}, ()) is None
    assert "one way" in str(check({"op": "outbound", "request": request}, ()))
    bad_headers = {**request, "headers": {"x": 1}}
    assert "headers" in str(check({"op": "outbound", "id": 2, "request": bad_headers}, ()))
    extra = {**request, "proxy": "http://evil"}
    assert check({"op": "outbound", "id": 3, "request": extra}, ()) is not None


def test_pytest_plugin_says_once_that_the_sandbox_is_off(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "DYNWF_SANDBOX": "off"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("dynwf sandbox off (DYNWF_SANDBOX=off)") == 1, done.stdout


def test_bad_sandbox_flag_is_a_usage_error(project_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", "run", "--tenant", "neighbour", "--sandbox", "maybe"],
        cwd=project_dir, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--sandbox='maybe' is not a sandbox mode: use one of require, auto, off" in done.stderr


def test_dev_server_is_unreachable_from_a_tenant_and_logs_each_fetch(
    project_dir: Path, internet: str
) -> None:
    """Issue 12 item 3, through a real `dynwf dev`: a tenant's fetch (the engine sends it)
    cannot reach the explorer API, by any loopback name; other fetches are logged."""
    from tests.test_cli_dev import Dev

    dev = Dev(project_dir, "--no-reload")
    try:
        port = dev.port
        for target in (
            f"http://127.0.0.1:{port}/cdn-cgi/explorer/api/workflows",
            f"http://localhost:{port}/cdn-cgi/explorer/api/workflows",
            f"http://[::1]:{port}/neighbour/",
        ):
            r = httpx.post(f"{dev.url}/open/", json={"url": target}, timeout=120)
            answer = r.json()
            assert answer["error"] == "OSError", answer
            assert "is the dev server itself" in answer["message"], answer
        r = httpx.post(f"{dev.url}/open/", json={"url": internet}, timeout=120)
        assert r.json()["text"] == "hello from the internet, you said ping"
        log = dev.output()
        assert f"open fetch POST {internet} -> 200 (internet)" in log, log
        assert "/cdn-cgi/explorer/api/workflows -> refused (internet)" in log, log
    finally:
        assert dev.stop() == 0


async def test_inline_tenants_fetch_by_the_same_global_outbound(
    project_dir: Path, allowed: Path, internet: str
) -> None:
    """--inline (tenant code in the engine, for debuggers) has no sandbox, but its
    fetch still goes as the loader's globalOutbound says."""
    p = Project.load(project_dir, clock=ManualClock(), isolation="inline")
    await p.start()
    try:
        assert await _fetch_in_step(p, "closed", internet) == {
            "error": "OSError",
            "message": NO_INTERNET,
        }
        routed = await _fetch_in_step(p, "routed", internet)
        assert json.loads(routed["text"])["via"] == "gateway"
        response = await _harness(p).fetch("/closed/", method="POST", json={"url": internet})
        assert json.loads(response.body)["message"] == NO_INTERNET
    finally:
        await p.stop()
