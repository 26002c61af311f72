"""Where an isolated step's time goes: timestamps in the engine and the isolate.

Run ``.venv/bin/python bench/timeline.py [--steps N] [--no-spin] [--inline]``. The
script re-runs itself with ``bench/_trace`` on PYTHONPATH, whose sitecustomize records
CLOCK_MONOTONIC timestamps (one clock for every process on Linux) in both processes:
each message read and write, and each journal commit in the engine. One instance of N
no-op steps of the dispatch bench's tenant then runs, and the script prints, for each
pair of consecutive events, the median gap and the total per step, largest first.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
LABELS = {
    "engine commit->engine committed": "journal commit",
    "engine read->engine commit": "engine: message read -> commit starts",
    "engine committed->engine write": "engine: commit done -> answer written",
    "engine write->isolate read": "answer written -> isolate reads it",
    "isolate read->isolate write": "isolate: callback, then on to the next step",
    "isolate write->engine read": "isolate writes -> engine reads",
    "engine committed->engine commit": "inline: commit done -> next commit",
}


async def measure(steps: int, mode: str, spin: bool, out: Path) -> None:
    import dispatch as bench
    import sitecustomize as trace  # bench/_trace's, loaded at start (see main)

    from dynwf.dispatch import tenant_binding

    p = await bench._open(out, mode, 1, isolation=mode)
    p.loaders["LOADER"].spin = spin
    try:
        await bench._first_step_ns(p, bench._tenant(0), 20)
        await asyncio.sleep(0.3)  # the spare isolate boots before, not during, the run
        trace.RECORD.clear()
        b = tenant_binding(p.env, {"tenantId": bench._tenant(0)})
        t0 = time.monotonic_ns()
        await b.create({"params": {"steps": steps}})
        await p.engine.wait_until_idle(timeout=300)
        t1 = time.monotonic_ns()
        engine = list(trace.RECORD)
    finally:
        await p.stop()
    events = [(t, f"engine {k}") for k, t in engine]
    for path in glob.glob(str(out / "isolate-*.json")):
        with open(path) as f:
            events += [(t, f"isolate {k}") for k, t in json.load(f)]
    events = sorted(e for e in events if t0 <= e[0] <= t1)
    gaps: dict[str, list[int]] = defaultdict(list)
    for (ta, a), (tb, b_) in itertools.pairwise(events):
        gaps[f"{a}->{b_}"].append(tb - ta)
    print(
        f"{mode}{'' if spin or mode == 'inline' else ', spin=False'}: "
        f"{(t1 - t0) / steps / 1000:.0f} us per step over {steps} steps"
    )
    rows = sorted(gaps.items(), key=lambda kv: -sum(kv[1]))
    for pair, values in rows:
        if len(values) < steps // 2:
            continue  # a pass boundary or the run's start and end, not a step
        label = LABELS.get(pair, pair)
        print(
            f"  {label:48s} median {statistics.median(values) / 1000:6.1f} us"
            f"   per step {sum(values) / steps / 1000:6.1f} us"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--no-spin", action="store_true", help="WorkerLoader.spin = False")
    ap.add_argument("--inline", action="store_true", help="isolation='inline' for contrast")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    mode = "inline" if args.inline else "process"
    if args.child:
        asyncio.run(measure(args.steps, mode, not args.no_spin, Path(args.child)))
        return 0
    with tempfile.TemporaryDirectory(prefix="dynwf-timeline-") as tmp:
        env = {
            **os.environ,
            "DYNWF_TIMELINE": tmp,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(HERE / "_trace"), os.environ.get("PYTHONPATH")])
            ),
        }
        return subprocess.call([sys.executable, __file__, *sys.argv[1:], "--child", tmp], env=env)


if __name__ == "__main__":
    sys.exit(main())
