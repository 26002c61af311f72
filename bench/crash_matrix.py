"""The crash matrix: every step x before/during/after, two crashes in one run, 20 x each :during.

Each cell is a real ``dynwf run --json`` (real SIGKILLs of real engine processes, the
tenant in real isolate processes) of a four-step workflow whose steps append
"<step> <attempt> <engine pid>" to a file before their first suspension point: s1
never suspends, s2 yields once, s3 sleeps 50 ms, s4 is a plain function. The counts
come from that file, not from the journal; the report's own counts are compared to it.

    .venv/bin/python bench/crash_matrix.py              # the full matrix (about 100 runs)
    .venv/bin/python bench/crash_matrix.py --reps 5     # fewer :during repetitions
    .venv/bin/python bench/crash_matrix.py --json

Columns: runs; exact = runs where every step's callback began exactly the expected
number of times (2 for a step crashed before or during, else 1); report=file = runs
where the report's "ran" (executions) equals the file's counts for every step; in
killed engine = :during runs where the crashed step's first line came from the killed
engine's isolate (its parent pid is the pid in the crash marker); the crashed steps'
observed counts over the runs ({count: runs}); complete = runs that ended complete
with the right output. Timing is not measured; the numbers do not depend on load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
STEPS = ["s1", "s2", "s3", "s4"]
OUTPUT = {"last": 4}


def make_project(into: Path) -> Path:
    project = into / "project"
    shutil.copytree(
        FIXTURES / "project_two_tenants",
        project,
        ignore=shutil.ignore_patterns("tenants", ".dynwf"),
    )
    (project / "tenants").mkdir()
    shutil.copytree(
        FIXTURES / "project_run" / "tenants" / "appender", project / "tenants" / "appender"
    )
    return project


def one_run(project: Path, work: Path, points: list[str]) -> dict[str, Any]:
    counters = work / "counters"  # the one folder the sandboxed tenant may write
    counters.mkdir(exist_ok=True)
    log = counters / "ran.log"
    log.unlink(missing_ok=True)
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    args = [sys.executable, "-m", "dynwf", "run", "--json", "--tenant", "appender"]
    args += ["--params", json.dumps({"log": str(log)}), "--skip-retry-delays"]
    args += ["--persist-to", str(state)]
    for p in points:
        args += ["--crash-at", p]
    env = {**os.environ, "DYNWF_SANDBOX_ALLOW": str(counters)}
    done = subprocess.run(args, cwd=project, capture_output=True, text=True, timeout=300, env=env)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        report = {"status": f"failed to run: {done.stderr.strip().splitlines()[-1:]}", "steps": []}
    ran = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return {"report": report, "ran": ran}


def judge(points: list[str], run: dict[str, Any]) -> dict[str, Any]:
    report, ran = run["report"], run["ran"]
    counts = Counter(line[0] for line in ran)
    crashed = {p.split(":")[0]: p.split(":")[1] for p in points}
    expected = {s: 2 if crashed.get(s) in ("before", "during") else 1 for s in STEPS}
    reported = {s["name"].rsplit("-", 1)[0]: s["executions"] for s in report.get("steps", [])}
    in_killed = None
    for m in report.get("markers", []):
        if m.get("kind") == "crash" and m.get("when") == "during":
            first = next((line for line in ran if line[0] == m["step"]), None)
            pid = m.get("pid")
            hit = first is not None and pid is not None and first[2] == str(pid)
            in_killed = hit if in_killed is None else in_killed and hit
    return {
        "exact": all(counts.get(s, 0) == expected[s] for s in STEPS),
        "report_matches": all(reported.get(s) == counts.get(s, 0) for s in STEPS),
        "in_killed": in_killed,
        "crashed_counts": tuple(counts.get(s, 0) for s in crashed),
        "complete": report.get("status") == "complete" and report.get("output") == OUTPUT,
        "counts": dict(counts),
        "reported": reported,
        "run": {"ran": ran, "markers": report.get("markers"), "status": report.get("status")},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--reps", type=int, default=20, help="repetitions of each :during case")
    ap.add_argument("--only-during", action="store_true", help="only the :during cases")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    opts = ap.parse_args()
    cases: list[tuple[list[str], int]] = []
    for step in STEPS:
        for when in ("before", "during", "after"):
            if opts.only_during and when != "during":
                continue
            cases.append(([f"{step}:{when}"], opts.reps if when == "during" else 1))
    if not opts.only_during:
        cases.append((["s2:during", "s4:before"], 1))
        cases.append((["s1:after", "s3:during"], 1))
    rows = []
    with tempfile.TemporaryDirectory(prefix="dynwf-crash-matrix-") as tmp:
        work = Path(tmp)
        project = make_project(work)
        for points, reps in cases:
            verdicts = [judge(points, one_run(project, work, points)) for _ in range(reps)]
            killed = [v["in_killed"] for v in verdicts if v["in_killed"] is not None]
            rows.append(
                {
                    "case": " + ".join(points),
                    "runs": reps,
                    "exact": sum(v["exact"] for v in verdicts),
                    "report_matches": sum(v["report_matches"] for v in verdicts),
                    "in_killed": sum(killed) if killed else None,
                    "crashed_counts": dict(
                        Counter("+".join(map(str, v["crashed_counts"])) for v in verdicts)
                    ),
                    "complete": sum(v["complete"] for v in verdicts),
                    # every run that was not exact (else the first), for a closer look
                    "samples": [
                        {"counts": v["counts"], "reported": v["reported"], "run": v["run"]}
                        for v in ([v for v in verdicts if not v["exact"]] or verdicts[:1])
                    ],
                }
            )
            r = rows[-1]
            print(f"  {r['case']}: {r['exact']}/{r['runs']} exact", file=sys.stderr, flush=True)
    if opts.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:  # what the runs that were not exact saw
        for sample in r["samples"] if r["exact"] < r["runs"] else []:
            print(f"not exact, {r['case']}: {json.dumps(sample)}", file=sys.stderr)
    head = f"{'case':<24} {'runs':>4} {'exact':>7} {'report=file':>11} {'in killed':>9} "
    head += f"{'complete':>8}  crashed step(s) began N times in M runs"
    print(head)
    print("-" * len(head))
    for r in rows:
        killed = "-" if r["in_killed"] is None else f"{r['in_killed']}/{r['runs']}"
        print(
            f"{r['case']:<24} {r['runs']:>4} {r['exact']:>3}/{r['runs']:<3} "
            f"{r['report_matches']:>7}/{r['runs']:<3} {killed:>9} "
            f"{r['complete']:>4}/{r['runs']:<3}  "
            + ", ".join(f"{k} in {n}" for k, n in sorted(r["crashed_counts"].items()))
        )
    print(
        f"\nexpected: a step crashed before or during began 2 times, every other step 1; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
