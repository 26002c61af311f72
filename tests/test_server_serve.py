"""A real dev server: a port, dev.json, SIGINT, and finding a running server."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dynwf.engine import Engine
from dynwf.errors import DynwfError
from dynwf.server import ServerError, create_app, find_running, serve

PROBE = Path(__file__).parent / "fixtures" / "server_probe.py"
ROOT = Path(__file__).parent.parent
API = "/cdn-cgi/explorer/api"


class Child:
    """``server_probe.py`` in its own process, read line by line."""

    def __init__(self, journal: Path, state: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(PROBE), str(journal), str(state), "0"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready "), line + self.proc.stderr.read()  # type: ignore[union-attr]
        self.url = line.split()[1]

    def interrupt(self) -> tuple[int, str, str]:
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=300)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[list[Child]]:
    children: list[Child] = []
    yield children
    for c in children:
        c.kill()


def wait_for_status(api: httpx.Client, path: str, status: str) -> dict[str, object]:
    """Poll until the instance reaches ``status``; the test timeout bounds the wait."""
    while True:
        result: dict[str, object] = api.get(path).json()["result"]
        if result["status"] == status:
            return result
        time.sleep(0.02)


@pytest.mark.slow
def test_serve_real_server_answers_writes_dev_json_and_stops_on_sigint(
    tmp_path: Path, spawn: list[Child]
) -> None:
    state, journal = tmp_path / "state", tmp_path / "state" / "journal.duckdb"
    child = Child(journal, state)
    spawn.append(child)
    dev = json.loads((state / "dev.json").read_text())
    assert dev == {"pid": child.proc.pid, "url": child.url}
    assert child.url.startswith("http://127.0.0.1:")
    assert find_running(state) == child.url

    with httpx.Client(base_url=child.url.replace("127.0.0.1", "localhost"), trust_env=False) as api:
        r = api.post(f"{API}/workflows/quick-wf/instances", json={"id": "q1", "params": [1, 2]})
        assert r.json() == {
            "success": True,
            "errors": [],
            "messages": [],
            "result": {"id": "q1", "tenant": ""},
        }
        done = wait_for_status(api, f"{API}/workflows/quick-wf/instances/q1", "complete")
        assert done["output"] == [1, 2]
        listed = api.get(f"{API}/workflows/quick-wf/instances").json()
        assert [i["id"] for i in listed["result"]] == ["q1"]
        echo = api.post("/acme/start?x=1", content=b"hello")
        assert echo.status_code == 201 and echo.headers["x-echo"] == "yes"
        assert echo.json()["url"].endswith("/acme/start?x=1") and echo.json()["body"] == "hello"
        assert api.get("/boom").status_code == 500

    code, out, err = child.interrupt()
    assert code == 0, err
    assert out.splitlines()[-1] == "stopped"
    assert "dynwf.server POST /cdn-cgi/explorer/api/workflows/quick-wf/instances 200" in err
    assert "Traceback" in err and "fetch exploded" in err  # the /boom traceback is logged
    assert not (state / "dev.json").exists()
    assert find_running(state) is None

    again = Child(journal, state)  # the journal outlives the server
    spawn.append(again)
    with httpx.Client(base_url=again.url, trust_env=False) as api:
        d = api.get(f"{API}/workflows/quick-wf/instances/q1").json()["result"]
        assert (d["status"], d["output"]) == ("complete", [1, 2])
    assert again.interrupt()[0] == 0


async def test_serve_port_in_use_is_one_clear_server_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError) as err:
            await serve(create_app(Engine()), port=port, state_dir=tmp_path)
    assert str(err.value) == (
        f"port {port} on 127.0.0.1 is in use: stop the other server or pass --port N"
    )
    assert isinstance(err.value, DynwfError)
    assert not (tmp_path / "dev.json").exists()


async def test_serve_failing_on_ready_shuts_down_and_raises(tmp_path: Path) -> None:
    urls: list[str] = []

    async def on_ready(url: str) -> None:
        urls.append(url)
        assert json.loads((tmp_path / "dev.json").read_text())["url"] == url
        raise RuntimeError("the caller could not start")

    with pytest.raises(RuntimeError, match="the caller could not start"):
        await serve(create_app(Engine()), port=0, state_dir=tmp_path, on_ready=on_ready)
    assert urls and urls[0].startswith("http://127.0.0.1:")
    assert not (tmp_path / "dev.json").exists()
    port = int(urls[0].rsplit(":", 1)[1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port was released


def write_dev(state: Path, pid: object, url: object) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    path = state / "dev.json"
    path.write_text(json.dumps({"pid": pid, "url": url}))
    return path


def test_find_running_without_a_file_is_none(tmp_path: Path) -> None:
    assert find_running(tmp_path) is None
    assert find_running(tmp_path / "missing") is None


def test_find_running_removes_a_file_naming_a_dead_pid(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = write_dev(tmp_path, dead.pid, "http://127.0.0.1:9")
    assert find_running(tmp_path) is None
    assert not path.exists()


@pytest.mark.parametrize("content", ["not json", "[]", '{"pid": "1", "url": "x"}', '{"pid": 0}'])
def test_find_running_removes_an_unreadable_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "dev.json"
    path.write_text(content)
    assert find_running(tmp_path) is None
    assert not path.exists()


def test_find_running_removes_a_file_whose_url_refuses(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        path = write_dev(tmp_path, os.getpid(), f"http://127.0.0.1:{port}")
        assert find_running(tmp_path) is None
    assert not path.exists()
