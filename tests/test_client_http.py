"""HttpStateClient against dynwf's own dev server app: the same answers as the journal gives."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from dynwf.client import (
    AmbiguousInstanceError,
    DevServerError,
    HttpStateClient,
    JournalStateClient,
    open_state,
)
from dynwf.engine import Engine, ManualClock
from dynwf.errors import (
    InstanceNotFoundError,
    InvalidStateError,
    ValidationError,
    WorkflowNotFoundError,
)
from dynwf.server import create_app
from tests.fixtures.client_state import END_MS, DevServer, build_template, copy_state, make_engine


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_template(tmp_path_factory.mktemp("client_http"))


@pytest.fixture
def state(template: Path, tmp_path: Path) -> Path:
    return copy_state(template, tmp_path)


@dataclass
class Live:
    """The state served by an engine in this process, and a client of its API."""

    engine: Engine
    clock: ManualClock
    client: HttpStateClient


@pytest.fixture
async def live(state: Path) -> AsyncIterator[Live]:
    clock = ManualClock(start=END_MS)
    engine = make_engine(state, clock)
    await engine.start()
    transport = httpx.ASGITransport(app=create_app(engine))
    try:
        yield Live(engine, clock, HttpStateClient("http://localhost", transport=transport))
    finally:
        await engine.stop()


async def test_client_http_lists_and_describes_exactly_as_the_journal_does(
    state: Path,
) -> None:
    journal = JournalStateClient(state / "journal.duckdb")
    expected_list = await journal.list_instances()
    places = [(r.id, r.workflow, r.tenant) for r in expected_list]
    expected = {p: await journal.describe(p[0], workflow=p[1], tenant=p[2]) for p in places}
    engine = make_engine(state, ManualClock(start=END_MS))
    await engine.start()
    try:
        http = HttpStateClient(
            "http://localhost", transport=httpx.ASGITransport(app=create_app(engine))
        )
        assert await http.list_instances() == expected_list
        assert (
            await http.list_instances(tenant="acme", limit=1)
            == [r for r in expected_list if r.tenant == "acme"][:1]
        )
        assert await http.list_instances(workflow="billing", status="complete") == [
            r for r in expected_list if r.workflow == "billing" and r.status == "complete"
        ]
        for (id, workflow, tenant), detail in expected.items():
            got = await http.describe(id, workflow=workflow, tenant=tenant)
            assert got == detail
            assert list(got) == list(detail)  # same key order too
        assert (await http.describe("b-1"))["tenant"] == "acme"  # found without flags
    finally:
        await engine.stop()


async def test_client_http_steers_the_running_engine(live: Live) -> None:
    paused = await live.client.pause("o-2")
    assert (paused.workflow, paused.tenant, paused.action, paused.status) == (
        "orders",
        "globex",
        "pause",
        "paused",
    )
    assert live.engine.lookup("orders", "globex", "o-2").status.value == "paused"
    assert (await live.client.resume("o-2")).status in ("queued", "running", "waiting")
    await live.engine.wait_until_idle(timeout=300)
    sent = await live.client.send_event("o-1", "approved", {"by": "eve"}, tenant="acme")
    assert sent.action == "send_event"
    await live.engine.wait_until_idle(timeout=300)
    done = await live.client.describe("o-1", tenant="acme")
    assert (done["status"], done["output"]) == ("complete", {"by": "eve"})
    assert (await live.client.terminate("shared", workflow="orders")).status == "terminated"
    assert (await live.client.restart("shared", workflow="orders")).status in (
        "queued",
        "running",
        "waiting",
    )


async def test_client_http_errors_are_typed_and_say_where(live: Live) -> None:
    with pytest.raises(AmbiguousInstanceError) as amb:
        await live.client.describe("o-1")
    assert amb.value.places == [("orders", ""), ("orders", "acme")]
    assert "on the dev server at http://localhost" in str(amb.value)
    with pytest.raises(InstanceNotFoundError, match="no instance 'nope' on the dev server"):
        await live.client.pause("nope")
    # a bare tenant id may also mean {"tenantId": ...}: the client looks before it asks
    with pytest.raises(
        InstanceNotFoundError, match=r"no instance 'o-2' \(workflow 'orders', tenant 'acme'\)"
    ):
        await live.client.describe("o-2", workflow="orders", tenant="acme")
    with pytest.raises(InstanceNotFoundError, match=r"'o-2' in workflow 'orders' tenant '\{\}'"):
        await live.client.describe("o-2", workflow="orders", tenant="{}")
    with pytest.raises(WorkflowNotFoundError, match=r"no workflow 'nope'.*orders, billing"):
        await live.client.list_instances(workflow="nope")
    with pytest.raises(
        InvalidStateError, match=r"cannot terminate.*workflow 'billing' tenant 'acme'"
    ):
        await live.client.terminate("b-1")
    with pytest.raises(ValidationError, match="event type"):
        await live.client.send_event("o-2", "bad type!", {})
    with pytest.raises(ValidationError, match="status 'bogus'"):
        await live.client.list_instances(status="bogus")


async def test_client_http_server_gone_is_one_dev_server_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = HttpStateClient(f"http://127.0.0.1:{port}")
    with pytest.raises(DevServerError) as err:
        await client.list_instances()
    assert f"the dev server at http://127.0.0.1:{port} did not answer" in str(err.value)
    assert "\n" not in str(err.value)


async def test_client_http_a_server_without_the_api_is_reported() -> None:
    async def plain(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello", status_code=200)

    app = Starlette(routes=[Route("/{path:path}", plain)])
    client = HttpStateClient("http://localhost", transport=httpx.ASGITransport(app=app))
    with pytest.raises(DevServerError, match="no explorer API envelope"):
        await client.describe("x", workflow="w", tenant="")


@pytest.mark.slow
async def test_client_open_state_goes_through_a_live_dev_server(state: Path) -> None:
    server = DevServer(state)
    try:
        client = await open_state(state)
        assert isinstance(client, HttpStateClient)
        assert (client.kind, client.location) == ("dev", server.url)
        assert (await client.pause("o-2")).status == "paused"
    finally:
        server.stop()
    assert not (state / "dev.json").exists()
    after = await open_state(state)
    assert isinstance(after, JournalStateClient)
    assert (await after.describe("o-2"))["status"] == "paused"
