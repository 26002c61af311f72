"""Dispatch benchmarks: cold tenant load, isolation cost per step, save-to-new-code, 1,000 tenants.

Run ``.venv/bin/python bench/dispatch.py [--quick] [--only cold,steps,reload,scale,cores,http]
[--max-isolates N] [--spawn] [--wrangler-dir DIR] [--json]``. Each scenario runs in a fresh subprocess (this script
re-invokes itself with ``--scenario``) on a generated platform project in a fresh temp
dir: ``wrangler.toml``, a dispatcher ``src/entry.py`` (the same shape as
tests/fixtures/project_two_tenants: ``env.LOADER.get(tenant, create_proxy(get_code))`` reading
``tenants/<id>/worker.py``) and one folder per tenant. The engine journals to a DuckDB
file (``durability="process"``) and runs on the system clock.

Every tenant's ``TenantWorkflow`` runs ``payload["steps"]`` no-op ``step.do`` calls; the
first callback returns ``time.monotonic_ns()`` read *inside the isolate*. On Linux that
is CLOCK_MONOTONIC, one clock for every process, so the engine can subtract its own
timestamps from it.

Definitions:

- **cold dispatch**: from the call to ``create()`` on a tenant's wrapped binding, for a
  tenant never loaded before, to the start of that instance's first step callback in
  the tenant's isolate. It covers the create commit, the pass start, the dispatcher's
  ``load_runner``, ``get_code()`` (reading the tenant's files), taking an isolate,
  sending the code, writing it to a temp dir and importing it, the ``run`` message and
  the ``do_begin`` round trip (which commits the step's ``attempt`` fact).
  On Linux every isolate is forked from the pool's template process (``dynwf.dispatch.
  _template_main``, its imports done) and ``IsolatePool`` keeps four forked spares, so a
  cold load costs a module import, not an interpreter start; ``--spawn`` starts each
  isolate as a fresh interpreter (``python -m dynwf.dispatch._isolate_main``, one
  spare), as before the template, for comparison. "spaced": new tenants arrive ``--gap``
  seconds apart (default 1 s), so the spare re-boots in between. "burst": ``--burst``
  never-seen tenants are created at the same instant; only the first finds a booted
  spare, the others wait for interpreters booting in parallel. "warm first step" is the
  same measure for a second instance of an already loaded tenant.
- **isolation cost per step**: one tenant, one instance of ``--steps`` no-op steps, timed
  from ``create()`` until the engine is idle, divided by the number of steps; with
  ``isolation="process"`` (engine and isolate spin briefly for each other's messages
  while one pass runs, the default), the same with ``WorkerLoader.spin = False``, and
  ``"inline"`` (the tenant's module executed in the engine process). The three projects
  run in the same process and alternate, repeated; the figure is the median of the
  paired differences (process minus inline). CPU per step adds the engine process's
  CPU time and the isolate's (from /proc), so the cost of spinning shows.
- **save-to-new-code**: a running Project with ``dynwf.project.watch`` armed and the
  tenant loaded. Each round waits ``--gap`` seconds, rewrites ``tenants/t0/worker.py``
  with a new ``VERSION``, then sends a request every 2 ms until the tenant answers with
  the new version; the latency is from the end of the write to that answer.
- **idle core** (``cores``): the engine and an isolate spin for each other only while a
  core is idle (``IsolatePool.idle_core``: no interpreter booting, no more runnable
  threads than cores at the watchdog's last tick). With one tenant loaded: how long
  until the pool reports an idle core, then how long after starting one CPU hog per
  core it stops, and after killing them it allows spinning again. On a busy machine
  the first figure is NaN: which is why no test asserts that spinning happened.
- **1,000 tenants**: ``--tenants`` tenants, one 3-step instance each, all created at
  once (``create()`` calls gathered 100 at a time). Total time from the first create
  until all are complete; memory is sampled by a separate process (``_memsample.py``,
  started and ready before the clock starts) every 250 ms as the engine process's RSS
  plus the RSS of every child process (the live isolates and the spares), and every
  2.5 s (reading PSS costs a page-table walk per process) as the PSS sum. The loader
  caps live isolates at ``--max-isolates`` (default 64, LRU).
  The engine process's own RSS is also read before the first create (template and
  spares started) and after the last instance completes.
- **HTTP, dynwf dev against wrangler dev** (``http``): a lone instance of
  ``http_steps`` (500) no-op steps driven as a user drives it: ``GET
  /t0000/create?steps=N`` (the tenant's fetch creates it through its own Workflow
  binding and answers its id), then ``GET /t0000/status?id=X`` (the tenant's fetch reads
  ``status()``) every ``poll_ms`` (10 ms) until it is complete; the time from the create
  request to the answer that says complete, divided by N. ``dynwf dev --no-reload``
  serves the bench project; ``wrangler dev`` 4.86 (from ``--wrangler-dir``, a folder
  outside the repo with ``npm install wrangler@4.86.0`` done) serves the same workflow
  and routes in JavaScript. Both servers run at once and alternate, ``repeats`` times
  each after a 20-step warm-up; the figure is the ratio of the medians. wrangler answers
  a ``status()`` made while the instance runs only when it completes, and sometimes not
  even then, so each poll gives up after 1 s and polls again (``polls_cut`` counts them).
  Without node/npx or wrangler the wrangler rows are left out with a note on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _harness as harness
from _memsample import MemSampler, mem_kb

from dynwf.dispatch import tenant_binding
from dynwf.dispatch._isolate import Isolate, IsolateLimits, _cpu_ms, spawn
from dynwf.project import Project, ReloadResult, watch
from dynwf.workers import Request

WRANGLER = """\
name = "bench-platform"
main = "src/entry.py"
compatibility_date = "2026-04-01"
compatibility_flags = ["python_workers"]

[[worker_loaders]]
binding = "LOADER"

[[workflows]]
name = "dynamic-workflow"
binding = "WORKFLOWS"
class_name = "DynamicWorkflow"
"""

ENTRY = '''\
"""Bench dispatcher: /<tenant>/... and each workflow pass go to tenants/<tenant>/."""

from pathlib import Path

from js import Object
from pyodide.ffi import create_proxy, to_js
from workers import WorkerEntrypoint

from dynamic_workflows import (
    DynamicWorkflowBinding,
    create_dynamic_workflow_entrypoint,
    wrap_workflow_binding,
)

__all__ = ["Default", "DynamicWorkflow", "DynamicWorkflowBinding"]

TENANTS = Path(__file__).resolve().parent.parent / "tenants"


def tenant_code(tenant):
    folder = TENANTS / tenant
    return to_js(
        {
            "compatibilityDate": "2026-04-01",
            "mainModule": "worker.py",
            "modules": {p.name: p.read_text() for p in sorted(folder.glob("*.py"))},
            "env": {"TENANT": tenant, "WORKFLOWS": wrap_workflow_binding({"tenantId": tenant})},
        },
        dict_converter=Object.fromEntries,
    )


def tenant_worker(tenant, env):
    return env.LOADER.get(tenant, create_proxy(lambda: tenant_code(tenant)))


def load_runner(ctx):
    return tenant_worker(ctx["metadata"]["tenantId"], ctx["env"]).getEntrypoint("TenantWorkflow")


DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        tenant = request.url.split("://", 1)[-1].split("/")[1]
        return await tenant_worker(tenant, self.env).getEntrypoint().fetch(request.js_object)
'''

WORKER = """\
import json
import time

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint, python_from_rpc

VERSION = {version}


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        first = None
        for k in range(event["payload"]["steps"]):

            @step.do(f"s{{k}}")
            async def s():
                return time.monotonic_ns() if k == 0 else None

            out = await s()
            if k == 0:
                first = out
        return {{"first": first, "tenant": self.env.TENANT}}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path, _, query = request.url.split("://", 1)[-1].partition("?")
        action = path.split("/")[2] if path.count("/") >= 2 else ""
        if action == "create":  # /<tenant>/create?steps=N: start an instance, answer its id
            inst = await self.env.WORKFLOWS.create({{"params": {{"steps": int(query[6:])}}}})
            return Response(inst["id"])
        if action == "status":  # /<tenant>/status?id=X: its status, as JSON
            st = python_from_rpc(await (await self.env.WORKFLOWS.get(query[3:]))["status"]())
            return Response(json.dumps({{"status": st["status"]}}))
        return Response(str(VERSION))
"""

# The same no-op workflow and fetch routes in JavaScript, for ``wrangler dev`` 4.86.
WRANGLER_JS = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class NoopWorkflow extends WorkflowEntrypoint {
  async run(event, step) {
    let first = null;
    for (let k = 0; k < event.payload.steps; k++) {
      const out = await step.do(`s${k}`, async () => (k === 0 ? Date.now() : null));
      if (k === 0) first = out;
    }
    return { first };
  }
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const action = url.pathname.split("/")[2] || "";
    if (action === "create") {
      const steps = Number(url.searchParams.get("steps"));
      const inst = await env.WORKFLOWS.create({ params: { steps } });
      return new Response(inst.id);
    }
    if (action === "status") {
      const st = await (await env.WORKFLOWS.get(url.searchParams.get("id"))).status();
      return Response.json({ status: st.status });
    }
    return new Response("0");
  },
};
"""

WRANGLER_JS_CONFIG = """\
{
  "name": "bench-noop",
  "main": "index.js",
  "compatibility_date": "2025-09-01",
  "workflows": [{"name": "noop", "binding": "WORKFLOWS", "class_name": "NoopWorkflow"}]
}
"""


# -- helpers --------------------------------------------------------------------------
def _tenant(k: int) -> str:
    return f"t{k:04d}"


def _make_project(root: Path, tenants: int) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "wrangler.toml").write_text(WRANGLER)
    (root / "src" / "entry.py").write_text(ENTRY)
    for k in range(tenants):
        folder = root / "tenants" / _tenant(k)
        folder.mkdir(parents=True)
        (folder / "worker.py").write_text(WORKER.format(version=0))
    return root


async def _open(tmp: Path, name: str, tenants: int, spawn: bool = False, **kw: Any) -> Project:
    root = _make_project(tmp / name, tenants)
    p = Project.load(root, persist_to=tmp / f"{name}-state", **kw)
    if spawn:  # --spawn: fresh interpreters, as before the template (for comparison)
        for loader in p.loaders.values():
            loader._pool.fork = False
    await p.start()
    return p


async def _first_step_ns(p: Project, tenant: str, steps: int = 1) -> tuple[int, int]:
    """Create one instance for ``tenant``; (create call ns, first step start ns)."""
    b = tenant_binding(p.env, {"tenantId": tenant})
    t0 = time.monotonic_ns()
    inst = await b.create({"params": {"steps": steps}})
    await p.engine.wait_until_idle(timeout=120)
    st = await inst.status()
    if st["status"] != "complete":
        raise SystemExit(f"instance of {tenant} ended {st}")
    return t0, int(st["output"]["first"])


def _ms(ns: int) -> float:
    return ns / 1e6


def _summary(prefix: str, values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        f"{prefix}_median": statistics.median(ordered),
        f"{prefix}_p90": ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        f"{prefix}_max": ordered[-1],
        f"{prefix}_all": values,
    }


async def _boot_ms(limits: IsolateLimits) -> float:
    """A fresh isolate process: spawn until it answers a ping (an interpreter start)."""

    async def refuse(msg: dict[str, Any]) -> Any:
        raise RuntimeError("unexpected")

    t0 = time.perf_counter()
    iso = await Isolate.connect(await spawn(limits), refuse)
    await iso.conn.request({"op": "ping"})
    elapsed = time.perf_counter() - t0
    await iso.close()
    return elapsed * 1000


# -- scenarios (each runs in its own subprocess and returns its metrics) --------------
async def scenario_cold(tmp: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Never-seen tenants: spaced arrivals, then a burst; warm first steps for contrast."""
    spaced, burst, gap = opts["cold"], opts["burst"], opts["gap"]
    p = await _open(
        tmp, "cold", spaced + burst, spawn=opts["spawn"], max_isolates=opts["max_isolates"]
    )
    try:
        boots = [await _boot_ms(IsolateLimits()) for _ in range(5)]
        cold, warm = [], []
        for k in range(spaced):
            await asyncio.sleep(gap)  # the spare (re)boots meanwhile
            t0, first = await _first_step_ns(p, _tenant(k))
            cold.append(_ms(first - t0))
            t0, first = await _first_step_ns(p, _tenant(k))  # now loaded
            warm.append(_ms(first - t0))
        await asyncio.sleep(gap)
        names = [_tenant(spaced + k) for k in range(burst)]
        bindings = [tenant_binding(p.env, {"tenantId": t}) for t in names]
        t0 = time.monotonic_ns()
        insts = await asyncio.gather(*(b.create({"params": {"steps": 1}}) for b in bindings))
        await p.engine.wait_until_idle(timeout=120)
        burst_ms = []
        for inst in insts:
            st = await inst.status()
            if st["status"] != "complete":
                raise SystemExit(f"burst instance ended {st}")
            burst_ms.append(_ms(int(st["output"]["first"]) - t0))
        loads = p.loaders["LOADER"].loads
    finally:
        await p.stop()
    return {
        **_summary("cold", cold),
        **_summary("warm", warm),
        **_summary("burst", burst_ms),
        "boot_ms_median": statistics.median(boots),
        "loads": loads,
    }


STEP_MODES = ("process", "process-no-spin", "inline")


def _isolate_cpu_ms(p: Project) -> int:
    """CPU ms used so far by the isolate of tenant t0000 (0 when it runs inline)."""
    iso = p.loaders["LOADER"].get(_tenant(0), lambda: {})._isolate
    return _cpu_ms(iso.pid) if iso is not None else 0


async def scenario_steps(tmp: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """One instance of N no-op steps: isolated (spinning or not) vs inline, alternating."""
    steps, repeats = opts["steps"], opts["repeats"]
    projects: dict[str, Project] = {}
    for m in STEP_MODES:
        projects[m] = await _open(
            tmp, m, 1, spawn=opts["spawn"], isolation="inline" if m == "inline" else "process"
        )
        projects[m].loaders["LOADER"].spin = m == "process"
    per_step: dict[str, list[float]] = {m: [] for m in STEP_MODES}
    cpu: dict[str, list[float]] = {m: [] for m in STEP_MODES}
    commits: dict[str, list[float]] = {m: [] for m in STEP_MODES}
    try:
        for m in STEP_MODES:  # load the tenant and warm every path
            await _first_step_ns(projects[m], _tenant(0), 20)
        # Each load boots a spare isolate 0.1 s later (for the next cold load); let
        # those interpreter starts finish: they are no part of a warm step's cost.
        await asyncio.sleep(1.0)
        for _ in range(repeats):
            for m in STEP_MODES:
                p = projects[m]
                b = tenant_binding(p.env, {"tenantId": _tenant(0)})
                c0, cpu0, iso0 = p.engine.commits, time.process_time(), _isolate_cpu_ms(p)
                t0 = time.perf_counter()
                inst = await b.create({"params": {"steps": steps}})
                await p.engine.wait_until_idle(timeout=300)
                elapsed = time.perf_counter() - t0
                used = (time.process_time() - cpu0) * 1000 + _isolate_cpu_ms(p) - iso0
                st = await inst.status()
                if st["status"] != "complete":
                    raise SystemExit(f"{m} instance ended {st}")
                per_step[m].append(elapsed * 1000 / steps)
                cpu[m].append(used / steps)
                commits[m].append((p.engine.commits - c0) / steps)
        iso = projects["process"].loaders["LOADER"].get(_tenant(0), lambda: {})._isolate
        hits = iso.conn.spin_hits / iso.conn.spins if iso is not None and iso.conn.spins else 0
        spins = iso.conn.spins if iso is not None else 0
        off = projects["process-no-spin"].loaders["LOADER"].get(_tenant(0), lambda: {})._isolate
        nospin_spins = off.conn.spins if off is not None else 0
    finally:
        for p in projects.values():
            await p.stop()

    def added(mode: str) -> float:
        pairs = zip(per_step[mode], per_step["inline"], strict=True)
        return statistics.median(a - b for a, b in pairs)

    out: dict[str, Any] = {
        "added_ms_per_step": added("process"),
        "nospin_added_ms_per_step": added("process-no-spin"),
        "engine_spin_hit_pct": 100 * hits,
        # Spinning needs an idle core (IsolatePool.idle_core): on a busy machine the
        # engine rightly does not spin, so this count is a fact about the machine.
        "engine_spins_per_step": spins / (steps * repeats + 20),
        "nospin_engine_spins": nospin_spins,
        "runs": per_step,
    }
    for m in STEP_MODES:
        key = m.replace("process-no-spin", "nospin")
        out[f"{key}_ms_per_step"] = statistics.median(per_step[m])
        out[f"{key}_cpu_ms_per_step"] = statistics.median(cpu[m])
        out[f"{key}_commits_per_step"] = statistics.median(commits[m])
    return out


async def scenario_reload(tmp: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """Save a tenant module under a running watcher; time until a request sees it."""
    saves, gap = opts["saves"], opts["gap"]
    p = await _open(tmp, "reload", 1)
    path = p.root / "tenants" / _tenant(0) / "worker.py"
    url = f"http://localhost/{_tenant(0)}/version"
    results: list[ReloadResult] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(p, results.append, stop=stop))
    latencies: list[float] = []
    try:
        r = await p.fetch(Request(url))
        if r.body != b"0":
            raise SystemExit(f"tenant answered {r.body!r} before any save")
        for version in range(1, saves + 1):
            await asyncio.sleep(gap)  # the watcher is armed, the spare booted
            path.write_text(WORKER.format(version=version))
            t0 = time.perf_counter()
            want = str(version).encode()
            while (await p.fetch(Request(url))).body != want:
                if time.perf_counter() - t0 > 10:
                    raise SystemExit(f"save {version} not served after 10 s")
                await asyncio.sleep(0.002)
            latencies.append((time.perf_counter() - t0) * 1000)
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)
        await p.stop()
    reload_ms = [r.seconds * 1000 for r in results if r.workers]
    return {
        **_summary("save", latencies),
        "reload_now_ms_median": statistics.median(reload_ms) if reload_ms else float("nan"),
        "reloads": len(results),
    }


async def scenario_scale(tmp: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """N tenants, one 3-step instance each, created at once; time and peak memory."""
    n, cap = opts["tenants"], opts["max_isolates"]
    p = await _open(tmp, "scale", n, spawn=opts["spawn"], max_isolates=cap)
    loader = p.loaders["LOADER"]
    try:
        await asyncio.sleep(1.0)  # the template and the spare have started
        rss_before = mem_kb(os.getpid())[0]
        with MemSampler() as mem:
            t0 = time.perf_counter()
            for start in range(0, n, 100):
                await asyncio.gather(
                    *(
                        tenant_binding(p.env, {"tenantId": _tenant(k)}).create(
                            {"params": {"steps": 3}}
                        )
                        for k in range(start, min(start + 100, n))
                    )
                )
            created = time.perf_counter() - t0
            await p.engine.wait_until_idle(timeout=900)
            elapsed = time.perf_counter() - t0
        rss_after = mem_kb(os.getpid())[0]
        counts: dict[str, int] = {}
        for st in p.engine.all_states():
            counts[st.status.value] = counts.get(st.status.value, 0) + 1
        if counts.get("complete") != n:
            raise SystemExit(f"expected {n} complete, found {counts}")
        loads = loader.loads
    finally:
        await p.stop()
    return {
        "tenants": n,
        "max_isolates": cap,
        "total_s": elapsed,
        "create_s": created,
        "tenants_per_s": n / elapsed,
        "peak_rss_mb": mem.peak_rss_kb / 1024,
        "peak_pss_mb": mem.peak_pss_kb / 1024,
        "engine_rss_at_peak_mb": mem.engine_rss_at_peak_kb / 1024,
        "engine_rss_before_mb": rss_before / 1024,
        "engine_rss_after_mb": rss_after / 1024,
        "peak_child_processes": mem.peak_children,
        "code_loads": loads,
    }


async def _until_ms(cond: Any, limit_s: float = 30.0) -> float:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > limit_s:
            return float("nan")
        await asyncio.sleep(0.005)
    return (time.perf_counter() - t0) * 1000


async def scenario_cores(tmp: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """The idle-core watchdog against real CPU hogs: how soon spinning stops and resumes."""
    import subprocess

    p = await _open(tmp, "cores", 1)
    try:
        await _first_step_ns(p, _tenant(0), 20)
        pool = p.loaders["LOADER"]._pool
        idle_ms = await _until_ms(lambda: pool.idle_core)  # the spare booted, nothing else runs
        hogs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(os.cpu_count() or 2)
        ]
        try:
            crowd_ms = await _until_ms(lambda: not pool.idle_core)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        calm_ms = await _until_ms(lambda: pool.idle_core)
    finally:
        await p.stop()
    return {"idle_at_start_ms": idle_ms, "crowd_seen_ms": crowd_ms, "calm_seen_ms": calm_ms}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wrangler_bin(opts: dict[str, Any]) -> tuple[str | None, str]:
    """The ``wrangler`` 4.86 executable for the HTTP comparison, or None and why not."""
    if shutil.which("node") is None or shutil.which("npx") is None:
        return None, "node/npx not found: the wrangler dev row is skipped"
    folder = Path(opts["wrangler_dir"]).expanduser()
    binary = folder / "node_modules" / ".bin" / "wrangler"
    if not binary.exists():
        return None, (
            f"no wrangler in {folder}: run `npm install wrangler@4.86.0` there (outside the "
            "repo) or pass --wrangler-dir; the wrangler dev row is skipped"
        )
    return str(binary), ""


class _Server:
    """A dev server in its own process group (``dynwf dev`` or ``wrangler dev``)."""

    def __init__(self, cmd: list[str], cwd: Path, log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    async def ready(self, client: Any, url: str, limit_s: float = 180.0) -> None:
        t0 = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except Exception:
                pass
            if time.perf_counter() - t0 > limit_s:
                raise SystemExit(
                    f"server not ready after {limit_s} s: {self.log.read_text()[-2000:]}"
                )
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # workerd and any straggler
        self.proc.wait()


# wrangler dev 4.86 answers a status() call made while the instance runs only when the
# instance completes, and sometimes not even then (until the client gives up): each poll
# gives up after this long and polls again. dynwf answers at once.
POLL_TIMEOUT_S = 1.0


async def _http_instance(client: Any, base: str, steps: int, poll_s: float) -> tuple[float, int]:
    """(ms per step, polls cut at POLL_TIMEOUT_S) of one instance: created through the
    tenant's fetch, its status polled through the tenant's fetch every ``poll_s`` s until
    it is complete."""
    import httpx

    t0 = time.perf_counter()
    r = await client.get(f"{base}/t0000/create?steps={steps}")
    if r.status_code != 200:
        raise SystemExit(f"create answered {r.status_code}: {r.text[:500]}")
    inst, cut = r.text, 0
    while True:
        try:
            r = await client.get(f"{base}/t0000/status?id={inst}", timeout=POLL_TIMEOUT_S)
        except httpx.TimeoutException:
            cut += 1
            continue
        status = r.json()["status"] if r.status_code == 200 else f"HTTP {r.status_code}"
        if status == "complete":
            break
        if status not in ("queued", "running", "waiting"):
            raise SystemExit(f"instance {inst} at {base}: {status} {r.text[:500]}")
        await asyncio.sleep(poll_s)
    return (time.perf_counter() - t0) * 1000 / steps, cut


async def scenario_http(tmp: Path, opts: dict[str, Any]) -> dict[str, Any]:
    """A lone instance of N no-op steps over HTTP: ``dynwf dev`` against ``wrangler dev``."""
    import httpx

    steps, repeats, poll_s = opts["http_steps"], opts["repeats"], opts["poll_ms"] / 1000
    env = {**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "1"}
    root = _make_project(tmp / "http", 1)
    port = _free_port()
    servers: dict[str, tuple[_Server, str]] = {
        "dynwf": (
            _Server(
                [
                    sys.executable,
                    "-m",
                    "dynwf",
                    "dev",
                    "--config",
                    str(root),
                    "--port",
                    str(port),
                    "--persist-to",
                    str(tmp / "http-state"),
                    "--no-reload",
                ],
                root,
                tmp / "dynwf.log",
                env,
            ),
            f"http://127.0.0.1:{port}",
        )
    }
    wrangler, skipped = _wrangler_bin(opts)
    if wrangler is not None:
        folder = tmp / "wrangler"
        folder.mkdir()
        (folder / "index.js").write_text(WRANGLER_JS)
        (folder / "wrangler.jsonc").write_text(WRANGLER_JS_CONFIG)
        wport = _free_port()
        cmd = [wrangler, "dev", "--port", str(wport), "--ip", "127.0.0.1"]
        cmd += ["--persist-to", str(tmp / "wrangler-state"), "--show-interactive-dev-session=false"]
        servers["wrangler"] = (
            _Server(cmd, folder, tmp / "wrangler.log", env),
            f"http://127.0.0.1:{wport}",
        )
    per_step: dict[str, list[float]] = {name: [] for name in servers}
    cut = dict.fromkeys(servers, 0)
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
            for server, base in servers.values():
                await server.ready(client, f"{base}/t0000/version")
                await _http_instance(client, base, 20, poll_s)  # load the tenant, warm up
            for _ in range(repeats):
                for name, (_, base) in servers.items():
                    ms, polls_cut = await _http_instance(client, base, steps, poll_s)
                    per_step[name].append(ms)
                    cut[name] += polls_cut
    finally:
        for server, _ in servers.values():
            server.stop()
    out: dict[str, Any] = {"runs": per_step, "polls_cut": cut, "skipped": skipped}
    out["dynwf_http_ms_per_step"] = statistics.median(per_step["dynwf"])
    if "wrangler" in per_step:
        out["wrangler_http_ms_per_step"] = statistics.median(per_step["wrangler"])
        out["http_ratio"] = out["dynwf_http_ms_per_step"] / out["wrangler_http_ms_per_step"]
    return out


SCENARIOS: dict[str, harness.Scenario[dict[str, Any]]] = {
    "cold": scenario_cold,
    "steps": scenario_steps,
    "reload": scenario_reload,
    "scale": scenario_scale,
    "cores": scenario_cores,
    "http": scenario_http,
}

# (scenario, metric key, label, unit, target, higher is better); target None = information
ROWS: list[harness.Row] = [
    ("cold", "cold_median", "(1) cold dispatch, spaced arrivals, median", "ms", 3.0, False),
    ("cold", "cold_p90", "    ...p90", "ms", None, False),
    ("cold", "cold_max", "    ...max", "ms", None, False),
    ("cold", "warm_median", "    warm first step (tenant loaded), median", "ms", None, False),
    ("cold", "burst_median", "    burst of new tenants at once, median", "ms", None, False),
    ("cold", "burst_max", "    ...max", "ms", None, False),
    ("cold", "boot_ms_median", "    isolate interpreter boot (spawn->ready)", "ms", None, False),
    (
        "steps",
        "added_ms_per_step",
        "(2) added cost per warm step, process isolation",
        "ms",
        0.2,
        False,
    ),
    (
        "steps",
        "nospin_added_ms_per_step",
        "    ...the same without spinning (spin=False)",
        "ms",
        None,
        False,
    ),
    ("steps", "process_ms_per_step", "    per step, isolation=process", "ms", None, False),
    ("steps", "nospin_ms_per_step", "    per step, process, spin=False", "ms", None, False),
    ("steps", "inline_ms_per_step", "    per step, isolation=inline", "ms", None, False),
    (
        "steps",
        "process_cpu_ms_per_step",
        "    CPU per step, engine+isolate, process",
        "ms",
        None,
        False,
    ),
    ("steps", "nospin_cpu_ms_per_step", "    CPU per step, process, spin=False", "ms", None, False),
    ("steps", "inline_cpu_ms_per_step", "    CPU per step, inline", "ms", None, False),
    ("steps", "engine_spin_hit_pct", "    engine spins ended by the isolate", "%", None, True),
    ("steps", "engine_spins_per_step", "    engine spins per step, process", "", None, True),
    ("steps", "nospin_engine_spins", "    engine spins, spin=False (0 expected)", "", None, False),
    ("steps", "process_commits_per_step", "    journal commits per step, process", "", None, False),
    ("steps", "inline_commits_per_step", "    journal commits per step, inline", "", None, False),
    ("reload", "save_median", "(3) save -> new code serves, median", "ms", 500.0, False),
    ("reload", "save_max", "    ...max", "ms", 500.0, False),
    ("reload", "reload_now_ms_median", "    of which reload_now(), median", "ms", None, False),
    ("scale", "total_s", "(4) N tenants x 1 instance: total time", "s", 10.0, False),
    ("scale", "tenants_per_s", "    tenants completed per second", "/s", None, True),
    ("scale", "peak_rss_mb", "    peak RSS, engine + all isolates", "MB", None, False),
    ("scale", "peak_pss_mb", "    peak PSS, engine + all isolates", "MB", None, False),
    ("scale", "engine_rss_at_peak_mb", "    engine process RSS at that peak", "MB", None, False),
    (
        "scale",
        "engine_rss_before_mb",
        "    engine process RSS before the tenants",
        "MB",
        None,
        False,
    ),
    ("scale", "engine_rss_after_mb", "    engine process RSS after them", "MB", None, False),
    (
        "scale",
        "peak_child_processes",
        "    peak child processes (isolates + spare + template)",
        "",
        None,
        False,
    ),
    ("scale", "code_loads", "    code loads (> N means evicted mid-load)", "", None, False),
    ("cores", "idle_at_start_ms", "(5) idle core seen (NaN: machine busy 30 s)", "ms", None, False),
    ("cores", "crowd_seen_ms", "    CPU hogs started -> spinning stops", "ms", None, False),
    ("cores", "calm_seen_ms", "    hogs killed -> spinning allowed again", "ms", None, False),
    ("http", "http_ratio", "(6) HTTP, 1 instance x N steps: dynwf / wrangler", "x", 0.5, False),
    ("http", "dynwf_http_ms_per_step", "    dynwf dev, per step", "ms", None, False),
    ("http", "wrangler_http_ms_per_step", "    wrangler dev 4.86, per step", "ms", None, False),
]

FULL = {
    "cold": 20,
    "burst": 8,
    "gap": 1.0,
    "steps": 1000,
    "repeats": 5,
    "saves": 10,
    "tenants": 1000,
    "http_steps": 500,
    "poll_ms": 10,
}
QUICK = {
    "cold": 4,
    "burst": 3,
    "gap": 0.6,
    "steps": 200,
    "repeats": 2,
    "saves": 3,
    "tenants": 100,
    "http_steps": 500,
    "poll_ms": 10,
}


# -- driver ---------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only", default=",".join(SCENARIOS), help="comma list of " + ",".join(SCENARIOS)
    )
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    ap.add_argument("--max-isolates", type=int, default=64, help="loader cap on live isolates")
    ap.add_argument("--tenants", type=int, help="tenants in (4) (default 1000, quick 100)")
    ap.add_argument("--gap", type=float, help="seconds between new tenants / saves (default 1)")
    ap.add_argument("--json", action="store_true", help="print machine-readable results")
    ap.add_argument(
        "--wrangler-dir",
        default=os.environ.get("DYNWF_BENCH_WRANGLER_DIR", "/work/wrangler-bench"),
        help="a folder with `npm install wrangler@4.86.0` done, for (6) (outside the repo)",
    )
    ap.add_argument(
        "--spawn",
        action="store_true",
        help="start isolates as fresh interpreters, not forked from the template (to compare)",
    )
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    ap.add_argument("--opts", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.scenario:
        print(json.dumps(harness.run_scenario(SCENARIOS, args.scenario, json.loads(args.opts))))
        return 0

    opts: dict[str, Any] = dict(QUICK if args.quick else FULL)
    opts["max_isolates"] = args.max_isolates
    opts["wrangler_dir"] = args.wrangler_dir
    opts["spawn"] = args.spawn
    if args.tenants is not None:
        opts["tenants"] = args.tenants
    if args.gap is not None:
        opts["gap"] = args.gap
    names = harness.select(ap, args.only, SCENARIOS)
    results = harness.spawn_all(__file__, names, ["--opts", json.dumps(opts)])

    table = ROWS
    if "scale" in results:  # "N tenants" -> the count that ran
        n = f"{results['scale'].get('tenants', opts['tenants']):,} tenants"
        table = [
            (s, k, lab.replace("N tenants", n) if s == "scale" else lab, u, t, h)
            for s, k, lab, u, t, h in ROWS
        ]
    for res in results.values():  # a row whose metric was skipped (no wrangler) is left out
        if res.get("skipped"):
            print(f"note: {res['skipped']}", file=sys.stderr)
    table = [r for r in table if "error" in results.get(r[0], {}) or r[1] in results.get(r[0], {})]
    rows, failed = harness.verdict_rows(table, results, one_error_per_label=True)

    m = harness.machine("nproc", "cpu", "python")
    title = f"dispatch bench  {'quick' if args.quick else 'full'}"
    facts = {**m, "max_isolates": opts["max_isolates"]}
    doc = {"machine": m, "opts": opts, "rows": rows, "raw": results}
    harness.report(doc, as_json=args.json, title=title, facts=facts, target_width=14)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
