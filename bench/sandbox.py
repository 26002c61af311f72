"""What the isolate sandbox costs: each entry point, per isolate, and an isolate's boot.

Run ``.venv/bin/python bench/sandbox.py [--n 20] [--json]``. Rows:

- **confine_shared / confine_isolate / seal_modules**: the wall time of each call in a
  fresh interpreter (one process per sample), as today's spawn path runs them.
- **forked isolate**: one process runs ``confine_shared`` once, then forks children that
  each run ``confine_isolate`` and ``seal_modules`` (the fork-server shape: the shared
  part is paid once, this is the per-isolate cost).
- **isolate boot to loaded**: spawn an isolate process, connect, send a one-module
  tenant and wait for its ``load`` answer, with ``DYNWF_SANDBOX=auto`` and ``off``
  alternating; the difference is what the sandbox adds to a cold start on this path.

Medians and 90th percentiles in ms; numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

_CHILD = """
import json, sys, tempfile, time
t0 = time.perf_counter()
from dynwf import sandbox
t1 = time.perf_counter()
root = tempfile.mkdtemp(prefix="dynwf-bench-")
policy = sandbox.Policy("auto")
a = time.perf_counter(); sandbox.confine_shared(policy); b = time.perf_counter()
sandbox.confine_isolate(policy, root); c = time.perf_counter()
sandbox.seal_modules(policy); d = time.perf_counter()
print(json.dumps({"import": t1 - t0, "confine_shared": b - a, "confine_isolate": c - b,
                  "seal_modules": d - c}))
"""

_FORKS = """
import json, os, sys, tempfile, time
from dynwf import sandbox
policy = sandbox.Policy("auto")
roots = [tempfile.mkdtemp(prefix="dynwf-bench-") for _ in range(int(sys.argv[1]))]
sandbox.confine_shared(policy)
out = []
for root in roots:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        a = time.perf_counter()
        sandbox.confine_isolate(policy, root)
        sandbox.seal_modules(policy)
        b = time.perf_counter()
        os.write(w, repr(b - a).encode())
        os._exit(0)
    os.close(w)
    out.append(float(os.read(r, 64)))
    os.close(r)
    os.waitpid(pid, 0)
print(json.dumps(out))
"""


def _stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    return {"median_ms": round(statistics.median(ms), 3), "p90_ms": round(p90, 3)}


def per_call(n: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {}
    for _ in range(n):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True
        ).stdout
        for k, v in json.loads(out).items():
            samples.setdefault(k, []).append(v)
    return {k: _stats(v) for k, v in samples.items()}


def forked(n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _FORKS, str(n)], capture_output=True, text=True, check=True
    ).stdout
    return _stats(json.loads(out))


async def _boot_once(mode: str) -> float:
    from dynwf.dispatch._isolate import IsolateLimits, discard, spawn
    from dynwf.dispatch._wire import Connection

    os.environ["DYNWF_SANDBOX"] = mode
    start = time.perf_counter()
    booted = await spawn(IsolateLimits())
    sock = booted[1]
    conn = await Connection.open(sock)
    code = {"mainModule": "w.py", "modules": {"w.py": "X = 1\n"}, "env": {}}
    await conn.request({"op": "load", "code": code, "bindings": []})
    took = time.perf_counter() - start
    await conn.close()
    await discard(booted)
    return took


async def boots(n: int) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {"auto": [], "off": []}
    for _ in range(n):
        for mode in ("auto", "off"):
            samples[mode].append(await _boot_once(mode))
    return {f"isolate boot to loaded, sandbox {m}": _stats(v) for m, v in samples.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="samples per row")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="dynwf-bench-sandbox-")
    os.environ["TMPDIR"] = tempfile.tempdir = tmp  # every folder made here, and in children
    try:
        rows: dict[str, Any] = per_call(args.n)
        rows["forked isolate (confine_isolate + seal_modules)"] = forked(args.n)
        rows.update(asyncio.run(boots(args.n)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(map(len, rows))
    print(f"{'row':<{width}}  {'median ms':>10}  {'p90 ms':>8}")
    for name, s in rows.items():
        print(f"{name:<{width}}  {s['median_ms']:>10.3f}  {s['p90_ms']:>8.3f}")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, n={args.n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
