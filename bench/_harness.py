"""Shared harness of the benchmark scripts (bench/engine.py, bench/dispatch.py).

Each script runs every scenario in a fresh subprocess of itself (``--scenario NAME``),
collects the JSON each one prints, turns the metrics into verdict rows and prints them
as a table (or as JSON). bench/ is not a package: the scripts import this module as
``_harness``, found through the script's own folder on ``sys.path``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

Scenario = Callable[[Path, T], Coroutine[Any, Any, dict[str, Any]]]
# (scenario, metric key, label, unit, target, higher is better); target None = information
Row = tuple[str, str, str, str, float | None, bool]


def fmt(value: float) -> str:
    """A number with about three significant digits (thousands separated from 100 on)."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _cpu_model() -> str:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def _duckdb_version() -> str:
    import duckdb

    return str(duckdb.__version__)


_MACHINE_FIELDS: dict[str, Callable[[], Any]] = {
    "nproc": os.cpu_count,
    "cpu": _cpu_model,
    "python": platform.python_version,
    "duckdb": _duckdb_version,
    "platform": platform.platform,
}


def machine(*fields: str) -> dict[str, Any]:
    """Facts about this machine, in the order asked: nproc, cpu, python, duckdb, platform."""
    return {name: _MACHINE_FIELDS[name]() for name in fields}


def run_scenario(scenarios: Mapping[str, Scenario[T]], name: str, arg: T) -> dict[str, Any]:
    """Run scenario ``name`` (in this process) in a fresh temp dir; return its metrics."""
    with tempfile.TemporaryDirectory(prefix=f"dynwf-bench-{name}-") as tmp:
        return asyncio.run(scenarios[name](Path(tmp), arg))


def select(ap: argparse.ArgumentParser, only: str, known: Iterable[str]) -> list[str]:
    """The scenario names of the comma list ``only``; an argparse error for unknown ones."""
    known = list(known)
    names = [s.strip() for s in only.split(",") if s.strip()]
    unknown = [s for s in names if s not in known]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; choose from {','.join(known)}")
    return names


def spawn_scenario(script: str, name: str, extra: list[str]) -> dict[str, Any]:
    """Run ``script --scenario NAME *extra`` in a subprocess; its metrics plus ``wall_s``.

    A failed subprocess gives ``{"error": <tail of its output>, "wall_s": ...}``.
    """
    cmd = [sys.executable, script, "--scenario", name, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-2000:], "wall_s": wall}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def spawn_all(
    script: str, names: list[str], extra: list[str], note: str = ""
) -> dict[str, dict[str, Any]]:
    """Each named scenario in its own subprocess, in order, with progress on stderr."""
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        print(f"running ({name}){note} ...", file=sys.stderr, flush=True)
        results[name] = spawn_scenario(script, name, extra)
    return results


def verdict_rows(
    table: Iterable[Row], results: Mapping[str, Mapping[str, Any]], *, one_error_per_label: bool
) -> tuple[list[dict[str, Any]], bool]:
    """The result rows of ``table`` for the scenarios in ``results``, and whether one failed.

    A measured row gets PASS/MISS against its target ("-" without one); a failed
    scenario's rows get ERROR (only when no row has that label yet, if
    ``one_error_per_label``).
    """
    rows: list[dict[str, Any]] = []
    failed = False
    for scen, key, label, unit, target, higher in table:
        if scen not in results:
            continue
        res = results[scen]
        if "error" in res:
            if not one_error_per_label or not any(r["scenario"] == label for r in rows):
                rows.append(
                    {
                        "scenario": label,
                        "measured": None,
                        "unit": unit,
                        "target": target,
                        "verdict": "ERROR",
                    }
                )
            failed = True
            continue
        value = float(res[key])
        verdict = "-"
        if target is not None:
            ok = value >= target if higher else value <= target
            verdict = "PASS" if ok else "MISS"
        rows.append(
            {
                "scenario": label,
                "measured": value,
                "unit": unit,
                "target": target,
                "higher_is_better": higher,
                "verdict": verdict,
            }
        )
    return rows, failed


def print_table(
    rows: list[dict[str, Any]], results: Mapping[str, Mapping[str, Any]], target_width: int
) -> None:
    """The rows as a text table; then, on stderr, failed scenarios' output and wall time."""
    width = max(len(r["scenario"]) for r in rows) if rows else 10
    print(f"{'scenario':<{width}}  {'measured':>15}  {'target':>{target_width}}  result")
    print("-" * (width + target_width + 27))
    for r in rows:
        meas = "error" if r["measured"] is None else f"{fmt(r['measured'])} {r['unit']}"
        tgt = "-"
        if r["target"] is not None:
            sign = ">=" if r.get("higher_is_better") else "<="
            tgt = f"{sign} {fmt(r['target'])} {r['unit']}"
        print(
            f"{r['scenario']:<{width}}  {meas.strip():>15}  {tgt:>{target_width}}  {r['verdict']}"
        )
    for name, res in results.items():
        if "error" in res:
            print(f"\n({name}) failed:\n{res['error']}", file=sys.stderr)
    total = sum(r.get("wall_s", 0.0) for r in results.values())
    print(f"\ntotal wall time {total:.1f} s", file=sys.stderr)


def report(
    doc: Mapping[str, Any],
    *,
    as_json: bool,
    title: str,
    facts: Mapping[str, Any],
    target_width: int,
) -> None:
    """Print ``doc`` as indented JSON, or a ``dynwf TITLE  key=value ...`` line and the table.

    ``doc["rows"]`` are the verdict rows, ``doc["raw"]`` the scenarios' results.
    """
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(f"\ndynwf {title}  " + "  ".join(f"{k}={v}" for k, v in facts.items()))
        print_table(doc["rows"], doc["raw"], target_width)
