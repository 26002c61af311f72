"""The dev server app around the API: the fetch bridge, Host/Origin guards, CORS, the log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from dynwf.workers import Request, Response
from tests.conftest import Harness
from tests.fixtures.server_helpers import API, captured, client, probe

seen: list[Request] = []


async def echo(request: Request) -> Response:
    seen.append(request)
    return Response(
        b"made by fetch: " + await request.bytes(),
        status=201,
        headers={"x-tenant": "acme", "content-length": "999", "content-type": "text/x-demo"},
    )


async def test_fetch_gets_method_full_url_headers_and_body(harness: Harness) -> None:
    seen.clear()
    async with client(harness, fetch=echo) as c:
        r = await c.post(
            "/acme/start?x=1&y=two",
            content=b'{"a": 1}',
            headers=[("x-one", "1"), ("x-many", "a"), ("x-many", "b")],
        )
    assert (r.status_code, r.content) == (201, b'made by fetch: {"a": 1}')
    assert r.headers["x-tenant"] == "acme" and r.headers["content-type"] == "text/x-demo"
    assert r.headers["content-length"] == str(len(r.content))  # recomputed, not copied
    (req,) = seen
    assert (req.method, req.url) == ("POST", "http://localhost/acme/start?x=1&y=two")
    assert req.headers["x-one"] == "1" and req.headers["x-many"] == "a, b"
    assert req.headers["host"] == "localhost"
    assert await req.text() == '{"a": 1}'


async def test_fetch_missing_answers_plain_404(harness: Harness) -> None:
    async with client(harness) as c:
        r = await c.get("/anything")
    assert r.status_code == 404
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"
    assert r.text.startswith("404 Not Found")


async def test_fetch_that_raises_is_a_one_line_500_and_a_logged_traceback(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("line one\nline two")

    caplog.set_level(logging.INFO, logger="dynwf.server")
    async with client(harness, fetch=broken) as c:
        r = await c.get("/boom")
    assert r.status_code == 500
    assert r.text == "fetch raised RuntimeError: line one\n"
    assert r.text.count("\n") == 1
    failed = [rec for rec in caplog.records if rec.exc_info]
    assert failed and "fetch failed on GET /boom" in failed[0].getMessage()


@pytest.mark.parametrize(
    ("answer", "message"),
    [("not a response", "fetch returned str, not a Response\n"), (Response("x", status=42), "")],
)
async def test_fetch_that_returns_garbage_is_500(
    harness: Harness, answer: Any, message: str
) -> None:
    async def odd(request: Request) -> Any:
        return answer

    async with client(harness, fetch=odd) as c:
        r = await c.get("/odd")
    assert r.status_code == 500
    assert r.text == (message or "fetch returned status 42, not 100-599\n")


async def test_every_request_is_one_log_line(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    probe(harness)
    caplog.set_level(logging.INFO, logger="dynwf.server")
    async with client(harness, fetch=echo) as c:
        await c.get(f"{API}/workflows/probe-wf/instances?page=2")
        await c.get(f"{API}/workflows/nope")
        await c.post("/acme/start", content=b"{}")
    lines = [r.getMessage() for r in caplog.records if r.name == "dynwf.server"]
    assert len(lines) == 3
    assert lines[0].startswith("GET /cdn-cgi/explorer/api/workflows/probe-wf/instances?page=2 200 ")
    assert lines[1].startswith("GET /cdn-cgi/explorer/api/workflows/nope 404 ")
    assert lines[2].startswith("POST /acme/start 201 ") and lines[2].endswith("ms")


async def test_api_refuses_a_foreign_host(harness: Harness) -> None:
    probe(harness)
    app_client = client(harness, fetch=echo)
    async with app_client as c:
        r = await c.get(f"{API}/workflows", headers={"host": "evil.example"})
        assert r.status_code == 403
        assert (r.headers["content-type"], r.text) == (
            "text/plain; charset=UTF-8",
            "Invalid Host header",
        )
        for host in ("127.0.0.1:8787", "localhost:1234", "[::1]:8787"):
            r = await c.get(f"{API}/workflows", headers={"host": host})
            assert r.status_code == 200, host
        # the guard is the API's: the tenant's own routes see any host
        assert (await c.get("/x", headers={"host": "evil.example"})).status_code == 201


async def test_api_refuses_a_foreign_origin_and_echoes_a_local_one(harness: Harness) -> None:
    probe(harness)
    async with client(harness) as c:
        r = await c.get(f"{API}/workflows", headers={"origin": "http://evil.example"})
        assert (r.status_code, r.text) == (403, "Invalid Origin header")
        r = await c.get(f"{API}/workflows", headers={"origin": "http://localhost:5173"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert r.content == captured("workflows-list.txt").body
        r = await c.get(f"{API}/workflows")
        assert "access-control-allow-origin" not in r.headers


async def test_api_answers_cors_preflight(harness: Harness) -> None:
    async with client(harness) as c:
        r = await c.options(f"{API}/workflows/anything")
        assert r.status_code == 204 and r.content == b""
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-methods"] == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        assert r.headers["access-control-max-age"] == "86400"
        r = await c.options(f"{API}/workflows", headers={"origin": "http://127.0.0.1:8799"})
        assert r.headers["access-control-allow-origin"] == "http://127.0.0.1:8799"


async def test_api_path_segments_are_decoded_after_splitting(harness: Harness) -> None:
    probe(harness)
    async with client(harness) as c:
        # an encoded "/" stays inside the id instead of making another segment
        r = await c.get(f"{API}/workflows/probe-wf/instances/a%2Fb")
        assert r.json()["errors"][0]["message"] == "Workflow instance 'a/b' not found."
        r = await c.get(f"{API}/workflows/probe%2Dwf")
        assert r.json()["result"]["name"] == "probe-wf"


async def test_api_root_is_not_served(harness: Harness) -> None:
    async with client(harness, fetch=echo) as c:
        for path in (API, f"{API}/", f"{API}/local/workers"):
            r = await c.get(path)
            assert (r.status_code, r.text) == (404, "404 Not Found"), path


async def test_head_is_answered_like_get(harness: Harness) -> None:
    probe(harness)
    async with client(harness) as c:
        r = await c.head(f"{API}/workflows")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"


# -- the explorer UI's files (the browser tests are in test_server_ui.py) ---------------

UI = "/cdn-cgi/explorer"


async def test_explorer_ui_pages_and_assets_are_served_from_the_package(harness: Harness) -> None:
    seen.clear()
    async with client(harness, fetch=echo) as c:
        bare = await c.get(UI)
        assert (bare.status_code, bare.headers["location"]) == (308, f"{UI}/")
        index = await c.get(f"{UI}/")
        page = await c.get(f"{UI}/workflows/wf/instances/a%2Fb?tenant=%7B%7D")
        css = await c.get(f"{UI}/assets/explorer.css")
        js = await c.get(f"{UI}/assets/instance.js")
        missing = [
            await c.get(f"{UI}/assets/nope.js"),
            await c.get(f"{UI}/assets/../_ui.py"),
            await c.get(f"{UI}/workflows/wf"),
            await c.get(f"{UI}/index.html"),
            await c.post(f"{UI}/"),
        ]
    assert index.status_code == page.status_code == 200
    assert "<title>Instances" in index.text and 'id="timeline"' in page.text
    assert index.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in index.headers["content-security-policy"]
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert js.headers["content-type"] == "text/javascript; charset=utf-8"
    assert [r.status_code for r in missing] == [404] * len(missing)
    assert seen == []  # nothing under /cdn-cgi/explorer reaches the tenant's fetch


async def test_explorer_ui_refuses_a_foreign_host(harness: Harness) -> None:
    async with client(harness) as c:
        r = await c.get(f"{UI}/", headers={"host": "attacker.example"})
    assert (r.status_code, r.text) == (403, "Invalid Host header")


def test_explorer_ui_files_load_nothing_from_elsewhere() -> None:
    from importlib import resources

    folder = resources.files("dynwf.server") / "explorer_ui"
    names = sorted(f.name for f in folder.iterdir())
    assert names == [
        "common.js",
        "explorer.css",
        "index.html",
        "instance.html",
        "instance.js",
        "list.js",
    ]
    for name in names:
        text = (folder / name).read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, name
