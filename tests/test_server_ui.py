"""The explorer UI at /cdn-cgi/explorer/ in a real headless Chromium against a real `dynwf dev`.

What a person sees is asserted: the instance list and its filters, the timeline of a
workflow that retried and slept, and actions taken from the page (checked in the API
too). The browser is Debian's ``chromium``, installed by the ``chromium`` fixture when
missing (root with apt-get), else these tests skip and say why. Playwright drives it
(``executable_path``); it never downloads a browser of its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.test_cli_dev import FIXTURE, Dev

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
expect = sync_api.expect

# The first test may install chromium with apt-get: a generous hang guard, not a speed claim.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHROMIUM = Path("/usr/bin/chromium")
APT_LOG = Path(tempfile.gettempdir()) / "dynwf-test-apt-chromium.log"
UI = "/cdn-cgi/explorer"
API = f"{UI}/api/workflows/dynamic-workflow"
# Screenshots of both pages go here when set (the closing note's pictures).
SHOTS = os.environ.get("DYNWF_UI_SCREENSHOTS")
# Generous hang guards for a busy machine, never a measure of speed.
WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)

# A tenant whose one run shows every kind of step: a step that fails twice then
# succeeds (1 s retry delays), a sleep, a wait for an event, a last step.
STORY = """
from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do(config={"retries": {"limit": 3, "delay": "1 second", "backoff": "constant"}})
        async def flaky(ctx):
            if ctx["attempt"] < 3:
                raise ConnectionError(f"upstream refused attempt {ctx['attempt']}")
            return {"rows": 42}

        got = await flaky()
        await step.sleep("nap", "2 seconds")
        approval = python_from_rpc(
            await step.wait_for_event("approval", "approval", timeout="1 hour")
        )

        @step.do()
        async def publish():
            return {"rows": got["rows"], "approved_by": approval["payload"]["by"]}

        return await publish()


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        body = await request.json()
        inst = await self.env.WORKFLOWS.create({"id": body.get("id"), "params": body.get("params")})
        return Response.json({"id": inst["id"], "tenant": self.env.TENANT})
"""


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium: present, else installed with apt-get as root, else a skip."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"no browser: {CHROMIUM} is missing and this is not root with apt-get to install "
            "Debian's chromium (run `apt-get install chromium` as root to run these tests)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with APT_LOG.open("a") as log:
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=900)
            if done.returncode != 0:
                pytest.skip(f"`{' '.join(cmd)}` failed (exit {done.returncode}); see {APT_LOG}")
    if not CHROMIUM.exists():
        pytest.skip(f"apt-get installed chromium but {CHROMIUM} is missing; see {APT_LOG}")
    return CHROMIUM


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    root = tmp_path_factory.mktemp("ui") / "project"
    shutil.copytree(FIXTURE, root)
    (root / "tenants" / "story").mkdir()
    (root / "tenants" / "story" / "worker.py").write_text(STORY)
    server = Dev(root)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    # launch() gives the browser a fresh temporary profile (--user-data-dir) of its own.
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(chromium),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        # the browser that runs is Debian's, not one Playwright downloaded
        version = subprocess.run([str(chromium), "--version"], capture_output=True, text=True)
        assert b.version in version.stdout, (b.version, version.stdout)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # A 409 is the engine refusing an action, which the page shows (asserted where used).
    pg.on(
        "console",
        lambda m: (
            errors.append(m.text) if m.type == "error" and "(Conflict)" not in m.text else None
        ),
    )
    # Every request the page makes stays on the dev server: nothing from the internet.
    outside: list[str] = []
    pg.on(
        "request",
        lambda r: None if r.url.startswith("http://127.0.0.1:") else outside.append(r.url),
    )
    pg.on("dialog", lambda d: d.accept())
    yield pg
    context.close()
    assert outside == []
    assert errors == []


def start(dev: Dev, tenant: str, id: str, params: Any = None) -> None:
    r = httpx.post(f"{dev.url}/{tenant}/start", json={"id": id, "params": params or {}})
    assert r.status_code == 200, r.text


def api_status(dev: Dev, id: str, tenant: str) -> str:
    r = httpx.get(f"{dev.url}{API}/instances/{id}", params={"tenant": tenant})
    assert r.status_code == 200, r.text
    return str(r.json()["result"]["status"])


def scope(tenant: str) -> str:
    return json.dumps({"tenantId": tenant}, separators=(",", ":"))


def instance_url(dev: Dev, id: str, tenant: str) -> str:
    return f"{dev.url}{UI}/workflows/dynamic-workflow/instances/{id}?tenant={quote(scope(tenant))}"


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


def test_dev_start_line_links_the_explorer(dev: Dev) -> None:
    assert f"{dev.url}{UI}/" in dev.output()
    r = httpx.get(f"{dev.url}{UI}")
    assert r.status_code == 308 and r.headers["location"] == f"{UI}/"
    page = httpx.get(f"{dev.url}{UI}/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(f"{dev.url}{UI}/assets/nope.js").status_code == 404
    assert httpx.get(f"{dev.url}{UI}/elsewhere").status_code == 404
    assert httpx.get(f"{dev.url}{UI}/", headers={"host": "evil.example"}).status_code == 403


def test_list_shows_instances_across_tenants_and_filters_narrow_it(dev: Dev, page: Any) -> None:
    start(dev, "acme", "same", {"name": "ada"})
    start(dev, "globex", "same", {"name": "grace"})
    start(dev, "story", "story-1", {"customer": "initech"})
    page.goto(f"{dev.url}{UI}/")
    rows = page.locator("#instances tbody tr")
    expect(rows).to_have_count(3)
    seen = {(r.get_attribute("data-id"), r.locator("td.tenant").inner_text()) for r in rows.all()}
    assert {("same", "acme"), ("same", "globex"), ("story-1", "story")} <= seen
    # the two "same" rows link to two different pages
    links = {a.get_attribute("href") for a in page.locator("#instances a", has_text="same").all()}
    assert links == {
        f"{UI}/workflows/dynamic-workflow/instances/same?tenant={quote(scope(t), safe='')}"
        for t in ("acme", "globex")
    }

    page.select_option("#f-tenant", label="globex")
    expect(page.locator("#instances tbody td.tenant")).to_have_text(["globex"])
    assert [r.get_attribute("data-id") for r in rows.all()] == ["same"]
    assert "tenant=" in page.url  # the filtered view is a link

    # live: globex's instance completes on its own while the page is open; acme's
    # sleeps for an hour
    page.select_option("#f-tenant", label="all")
    page.select_option("#f-status", "complete")
    expect(page.locator("#instances tbody td.tenant")).to_have_text(["globex"])
    expect(rows.locator(".badge")).to_have_text(["complete"])
    page.select_option("#f-status", "waiting")
    expect(page.locator("#instances tbody td.tenant")).to_have_text(["story", "acme"])
    assert "status=waiting" in page.url
    page.select_option("#f-status", "")
    expect(rows).to_have_count(3)
    expect(page.locator("#counts .chip")).to_have_text(["waiting 2", "complete 1"])
    shot(page, "h4-list.png")

    # the list links to the instance page, which names its tenant
    page.locator('#instances tbody tr[data-tenant=\'{"tenantId":"globex"}\'] a').click()
    page.wait_for_url("**/instances/same?tenant=*")
    expect(page.locator("#output")).to_contain_text("globex")
    assert page.locator("#facts dd").nth(1).inner_text() == "globex"
    assert '"name": "grace"' in page.locator("#params").inner_text()  # the tenant's own
    assert page.locator("#meta-box").is_visible()  # the envelope is apart, folded


def test_timeline_of_a_run_that_retried_slept_and_waits_then_an_event_from_the_page(
    dev: Dev, page: Any
) -> None:
    start(dev, "story", "story-2", {"customer": "hooli"})
    page.goto(instance_url(dev, "story-2", "story"))
    # the run reaches its wait for the event: two failed attempts, a sleep, a wait
    page.wait_for_selector(".tl-row[data-step='approval-1'] .seg.wait")
    assert page.locator("#i-status .badge").inner_text() == "waiting"
    flaky = page.locator(".tl-row[data-step='flaky-1']")
    assert flaky.locator(".seg.failed").count() == 2
    assert flaky.locator(".seg.failed .mark").all_inner_texts() == ["✕", "✕"]
    assert flaky.locator(".seg.retry").count() == 2
    assert flaky.locator(".seg.ok").count() == 1
    assert "3 attempts" in flaky.inner_text()
    titles = [s.get_attribute("title") for s in flaky.locator(".seg.failed").all()]
    assert "ConnectionError: upstream refused attempt 1" in titles[0]
    nap = page.locator(".tl-row[data-step='nap-1'] .seg.sleep")
    assert nap.count() == 1 and "sleep 2.00 s" in (nap.get_attribute("title") or "")
    # the steps table gives the error text of each failed attempt
    errors = page.locator("#steps tr[data-step='flaky-1'] .err").all_inner_texts()
    assert errors == [
        "attempt 1: ConnectionError: upstream refused attempt 1",
        "attempt 2: ConnectionError: upstream refused attempt 2",
    ]
    assert '"customer": "hooli"' in page.locator("#params").inner_text()

    page.fill("#e-type", "approval")
    page.fill("#e-payload", '{"by": "ops"}')
    page.click("#a-event")
    page.wait_for_selector("#i-status .badge[data-status='complete']")
    assert '"approved_by": "ops"' in page.locator("#output").inner_text()
    assert page.locator("#events tbody tr").all_inner_texts()[0].startswith("approval")
    assert "consumed by a wait" in page.locator("#events tbody").inner_text()
    # replays counted: the steps before the sleep were replayed by later passes
    assert "replayed" in page.locator(".tl-row[data-step='flaky-1']").inner_text()
    assert api_status(dev, "story-2", scope("story")) == "complete"
    shot(page, "h4-instance.png")


def test_pause_resume_terminate_from_the_page(dev: Dev, page: Any) -> None:
    start(dev, "story", "story-3")
    page.goto(instance_url(dev, "story-3", "story"))
    page.wait_for_selector("#i-status .badge[data-status='waiting']")
    page.wait_for_selector(".tl-row[data-step='approval-1']")

    page.click("#a-pause")
    page.wait_for_selector("#i-status .badge[data-status='paused']")
    assert api_status(dev, "story-3", scope("story")) == "paused"
    assert page.locator("#a-pause").is_disabled() and page.locator("#a-resume").is_enabled()

    page.click("#a-resume")
    page.wait_for_selector("#i-status .badge[data-status='waiting']")
    assert api_status(dev, "story-3", scope("story")) == "waiting"

    page.click("#a-terminate")  # confirmed in the dialog
    page.wait_for_selector("#i-status .badge[data-status='terminated']")
    assert api_status(dev, "story-3", scope("story")) == "terminated"
    assert page.locator("#a-terminate").is_disabled()

    # an action the engine refuses says why, on the page
    page.fill("#e-type", "approval")
    page.locator("#a-event").evaluate("b => b.disabled = false")
    page.click("#a-event")
    page.wait_for_selector("#flash.bad")
    assert "failed" in page.locator("#flash").inner_text()

    page.click("#a-delete")  # confirmed; back to the list, where it is gone
    page.wait_for_url(f"**{UI}/")
    r = httpx.get(f"{dev.url}{API}/instances/story-3", params={"tenant": scope("story")})
    assert r.status_code == 404


def test_an_attempt_cut_off_by_a_crash_in_dynwf_run_is_marked(tmp_path: Path, page: Any) -> None:
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "tenants" / "story").mkdir()
    (root / "tenants" / "story" / "worker.py").write_text(STORY)
    # a real SIGKILL during flaky's first attempt; the run stops at the wait for the event
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynwf",
            "run",
            "--tenant",
            "story",
            "--id",
            "crashy",
            "--crash-at",
            "flaky:during",
            "--skip-sleeps",
            "--skip-retry-delays",
            "--max-wait",
            "1 second",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "crash:during" in run.stdout, run.stdout + run.stderr
    server = Dev(root)
    try:
        page.goto(instance_url(server, "crashy", "story"))
        flaky = page.locator(".tl-row[data-step='flaky-1']")
        expect(flaky.locator(".seg.interrupted .mark")).to_have_text(["↯"])
        expect(flaky.locator(".seg.failed")).to_have_count(1)  # attempt 2: the tenant's error
        expect(flaky.locator(".seg.ok")).to_have_count(1)
        assert "cut off" in (flaky.locator(".seg.interrupted").get_attribute("title") or "")
        expect(page.locator("#tl-summary")).to_contain_text("1 cut off by a stopped process")
        # the replay by the recovering process is counted
        assert "replayed" in flaky.inner_text()
        shot(page, "h4-crash.png")
    finally:
        page.goto("about:blank")  # no polling of a server that is going away
        server.stop()
