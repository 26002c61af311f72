"""Engine benchmarks: step overhead, throughput, create rate, memory at scale, resume.

Run ``.venv/bin/python bench/engine.py [--only a,b,...] [--durability process|machine] [--json]``.
Each scenario runs in a fresh subprocess (this script re-invokes itself with
``--scenario``) on a journal file in a fresh temp dir, so memory peaks and state
never mix between scenarios. See bench/README.md for what each one measures.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import _harness as harness

from dynwf.workers import install

install()

from workers import WorkflowEntrypoint  # noqa: E402

from dynwf.engine import Engine, EntrypointProgram, ManualClock, Workflow  # noqa: E402
from dynwf.journal import Journal  # noqa: E402

BATCH = 100


# -- workflows ------------------------------------------------------------------------
class NoopSteps(WorkflowEntrypoint):
    """``payload["steps"]`` no-op ``step.do`` calls, then returns."""

    async def run(self, event: Any, step: Any) -> Any:
        for k in range(event.payload["steps"]):

            @step.do(f"s{k}")
            async def s() -> None:
                return None

            await s()
        return event.payload["steps"]


class SleepAtOnce(WorkflowEntrypoint):
    """Hibernates on its first line for an hour (never wakes within the benchmark)."""

    async def run(self, event: Any, step: Any) -> Any:
        await step.sleep("wait", "1 hour")
        return 1


class StepNapStep(WorkflowEntrypoint):
    """One step, a one-hour sleep (ManualClock-advanced), one more step."""

    async def run(self, event: Any, step: Any) -> Any:
        @step.do("before")
        async def before() -> int:
            return 1

        a = await before()
        await step.sleep("nap", "1 hour")

        @step.do("after")
        async def after() -> int:
            return 2

        return a + await after()


class StepsThenWait(WorkflowEntrypoint):
    """``payload["steps"]`` no-op steps, then waits for a ``go`` event."""

    async def run(self, event: Any, step: Any) -> Any:
        for k in range(event.payload["steps"]):

            @step.do(f"s{k}")
            async def s() -> None:
                return None

            await s()
        ev = await step.wait_for_event("go", "go")
        return ev["payload"]


# -- helpers --------------------------------------------------------------------------
def _engine(path: Path, durability: str, *, step_limit: int = 10_000, **kw: Any) -> Engine:
    eng = Engine(path, durability=durability, **kw)  # type: ignore[arg-type]
    eng.register(Workflow("noop", "NOOP", EntrypointProgram(NoopSteps), step_limit=step_limit))
    eng.register(Workflow("sleeper", "SLEEPER", EntrypointProgram(SleepAtOnce)))
    eng.register(Workflow("napper", "NAPPER", EntrypointProgram(StepNapStep)))
    eng.register(
        Workflow("resumer", "RESUMER", EntrypointProgram(StepsThenWait), step_limit=step_limit)
    )
    return eng


async def _create_all(eng: Engine, binding: str, n: int, params: Any = None) -> None:
    b = eng.binding(binding)
    for start in range(0, n, BATCH):
        items = [{"id": f"i{k}", "params": params} for k in range(start, min(start + BATCH, n))]
        made = await b.create_batch(items)
        assert len(made) == len(items), (len(made), len(items))


def _check_all(eng: Engine, n: int, status: str) -> None:
    counts: dict[str, int] = {}
    for st in eng.all_states():
        counts[st.status.value] = counts.get(st.status.value, 0) + 1
    if counts.get(status) != n:
        raise SystemExit(f"expected {n} instances {status}, found {counts}")


class GcClock:
    """Wall time spent in the cyclic garbage collector (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._t0 = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._t0

    def lap(self) -> float:
        total, self.total = self.total, 0.0
        return total


def _rss_now_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- scenarios (each runs in its own subprocess and returns its metrics) --------------
async def scenario_a(tmp: Path, durability: str) -> dict[str, Any]:
    """One instance, 1,000 no-op steps: wall time per step, median of 3 fresh engines."""
    runs = []
    for r in range(3):
        eng = _engine(tmp / f"a{r}" / "journal.duckdb", durability)
        async with eng:
            t0 = time.perf_counter()
            inst = await eng.binding("NOOP").create({"params": {"steps": 1000}})
            await eng.wait_until_idle()
            elapsed = time.perf_counter() - t0
            st = await inst.status()
            if st["status"] != "complete":
                raise SystemExit(f"instance ended {st}")
            commits = eng.commits
        runs.append(elapsed)
    med = statistics.median(runs)
    return {
        "ms_per_step": med * 1000 / 1000,
        "runs_s": runs,
        "commits_last_run": commits,
    }


async def scenario_b(tmp: Path, durability: str) -> dict[str, Any]:
    """1,000 instances x 10 no-op steps, created with create_batch, all running together."""
    n, steps = 1000, 10
    eng = _engine(tmp / "journal.duckdb", durability, max_running=1000)
    async with eng:
        t0 = time.perf_counter()
        await _create_all(eng, "NOOP", n, {"steps": steps})
        await eng.wait_until_idle()
        elapsed = time.perf_counter() - t0
        _check_all(eng, n, "complete")
        commits = eng.commits
    return {"steps_per_s": n * steps / elapsed, "elapsed_s": elapsed, "commits": commits}


async def scenario_c(tmp: Path, durability: str) -> dict[str, Any]:
    """10,000 create_batch'd instances (batches of 100) whose run() sleeps an hour at once."""
    n = 10_000
    eng = _engine(tmp / "journal.duckdb", durability)
    async with eng:
        t0 = time.perf_counter()
        await _create_all(eng, "SLEEPER", n)
        created = time.perf_counter() - t0
        await eng.wait_until_idle()
        all_asleep = time.perf_counter() - t0
        _check_all(eng, n, "waiting")
    return {"created_per_s": n / created, "create_s": created, "all_asleep_s": all_asleep}


async def scenario_d(tmp: Path, durability: str) -> dict[str, Any]:
    """50,000 instances asleep at once (ManualClock), then one advance wakes them all."""
    n = 50_000
    base = _rss_now_mb()
    clock = ManualClock()
    eng = _engine(tmp / "journal.duckdb", durability, clock=clock, max_running=1000)
    async with eng:
        gc_clock = GcClock()
        t0 = time.perf_counter()
        await _create_all(eng, "NAPPER", n)
        created = time.perf_counter() - t0
        await eng.wait_until_idle()
        asleep = time.perf_counter() - t0
        gc_asleep = gc_clock.lap()
        _check_all(eng, n, "waiting")
        rss_asleep = _rss_now_mb()
        t1 = time.perf_counter()
        gc_clock.lap()
        clock.advance("1 hour")
        await eng.wait_until_idle()
        woke = time.perf_counter() - t1
        gc_wake = gc_clock.lap()
        _check_all(eng, n, "complete")
    return {
        "rss_peak_mb": _rss_peak_mb(),
        "rss_asleep_mb": rss_asleep,
        "rss_baseline_mb": base,
        "create_s": created,
        "all_asleep_s": asleep,
        "wake_to_complete_s": woke,
        "gc_until_asleep_s": gc_asleep,
        "gc_wake_s": gc_wake,
    }


async def scenario_e(tmp: Path, durability: str) -> dict[str, Any]:
    """An instance with 10,000 journaled steps waits for an event; a new engine resumes it."""
    steps = 10_000
    src = tmp / "build"
    eng = _engine(src / "journal.duckdb", durability, step_limit=20_000)
    async with eng:
        inst = await eng.binding("RESUMER").create({"id": "big", "params": {"steps": steps}})
        await eng.wait_until_idle()
        st = await inst.status()
        if st["status"] != "waiting":
            raise SystemExit(f"built instance is {st}, expected waiting")
    starts, replays = [], []
    for r in range(3):  # three copies of the closed journal: median of 3 cold resumes
        run_dir = tmp / f"run{r}"
        shutil.copytree(src, run_dir)
        eng = _engine(run_dir / "journal.duckdb", durability, step_limit=20_000)
        t0 = time.perf_counter()
        await eng.start()
        t1 = time.perf_counter()
        inst = await eng.binding("RESUMER").get("big")
        await inst.send_event({"type": "go", "payload": "ok"})
        await eng.wait_until_idle()
        t2 = time.perf_counter()
        st = await inst.status()
        await eng.stop()
        if st != {"status": "complete", "output": "ok", "error": None}:
            raise SystemExit(f"resumed instance ended {st}")
        starts.append(t1 - t0)
        replays.append(t2 - t1)
    start_s, replay_s = statistics.median(starts), statistics.median(replays)
    return {"start_s": start_s, "replay_s": replay_s, "total_s": start_s + replay_s}


async def scenario_j(tmp: Path, durability: str) -> dict[str, Any]:
    """The floor under (a): one ``Journal.append`` of 2 rows (one commit), no engine."""
    n = 2000
    journal = Journal(tmp / "journal.duckdb", durability=durability)  # type: ignore[arg-type]
    config = '{"n":1,"config":{"retries":{"limit":5,"delay":1000,"backoff":"exponential"}}}'
    rows = [
        [
            ("u" * 32, 2 * i, 0, "attempt_end", f"do:s{i}#1", '{"n":1,"ok":true,"output":null}'),
            ("u" * 32, 2 * i + 1, 0, "attempt", f"do:s{i + 1}#1", config),
        ]
        for i in range(n + 100)
    ]
    for batch in rows[:100]:  # warm-up
        journal.append(batch)
    t0 = time.perf_counter()
    for batch in rows[100:]:
        journal.append(batch)
    elapsed = time.perf_counter() - t0
    journal.close()
    return {"ms_per_commit": elapsed * 1000 / n}


SCENARIOS: dict[str, harness.Scenario[str]] = {
    "a": scenario_a,
    "b": scenario_b,
    "c": scenario_c,
    "d": scenario_d,
    "e": scenario_e,
    "j": scenario_j,
}

# (scenario, metric key, label, unit, target, higher is better); target None = information
ROWS: list[harness.Row] = [
    ("a", "ms_per_step", "(a) per-step overhead, 1 instance x 1,000 steps", "ms", 1.0, False),
    ("b", "steps_per_s", "(b) throughput, 1,000 instances x 10 steps", "steps/s", 5000, True),
    ("c", "created_per_s", "(c) create_batch rate, 10,000 instances", "inst/s", 3000, True),
    ("c", "all_asleep_s", "    ...until all 10,000 hibernated", "s", None, False),
    ("d", "create_s", "(d) create 50,000 (create_batch calls)", "s", None, False),
    ("d", "all_asleep_s", "    ...until all 50,000 hibernated", "s", None, False),
    ("d", "gc_until_asleep_s", "      of which in the cyclic GC", "s", None, False),
    ("d", "rss_asleep_mb", "    RSS with 50,000 asleep", "MB", None, False),
    ("d", "rss_peak_mb", "    peak RSS (ru_maxrss)", "MB", 500, False),
    ("d", "wake_to_complete_s", "    wake -> all 50,000 complete", "s", None, False),
    ("d", "gc_wake_s", "      of which in the cyclic GC", "s", None, False),
    ("e", "start_s", "(e) engine start (journal load)", "s", None, False),
    ("e", "replay_s", "    replay of 10,000 steps to completion", "s", None, False),
    ("e", "total_s", "    start + replay", "s", 1.0, False),
    ("j", "ms_per_commit", "(j) one journal commit of 2 rows, no engine", "ms", None, False),
]


# -- driver ---------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(SCENARIOS), help="comma list of a,b,c,d,e,j")
    ap.add_argument("--durability", choices=("process", "machine"), default="process")
    ap.add_argument("--json", action="store_true", help="print machine-readable results")
    ap.add_argument("--scenario", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.scenario:
        print(json.dumps(harness.run_scenario(SCENARIOS, args.scenario, args.durability)))
        return 0

    names = harness.select(ap, args.only, SCENARIOS)
    extra = ["--durability", args.durability]
    results = harness.spawn_all(__file__, names, extra, note=f" durability={args.durability}")
    rows, failed = harness.verdict_rows(ROWS, results, one_error_per_label=False)

    m = harness.machine("nproc", "python", "duckdb", "platform")
    doc = {"durability": args.durability, "machine": m, "rows": rows, "raw": results}
    facts = {"durability": args.durability, **{k: m[k] for k in ("nproc", "python", "duckdb")}}
    title = "engine bench"
    harness.report(doc, as_json=args.json, title=title, facts=facts, target_width=18)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
