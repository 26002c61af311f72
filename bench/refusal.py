"""How fast each command refuses a journal it cannot use (target: within 2 s).

    .venv/bin/python bench/refusal.py            # a table
    .venv/bin/python bench/refusal.py --json     # one JSON row per case and command

For each case (a journal held by a `dynwf dev`, held by another writer, cut to
half / 4 KB / 0 bytes, flipped bytes in its header or first block, a lost `.wal`)
and each command (`dynwf dev`, `dynwf run`, `dynwf inspect`), the wall time from
starting the command until it exits, its exit status, and whether stderr is one
line; and `open ms`, the time dynwf itself takes to refuse (``Journal(path)`` in
this process, writer mode, until it raises). The `dynwf --help` baseline shows what
Python's start and dynwf's imports cost on this machine at this moment, so the
command times can be read on a busy machine too. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "project_two_tenants"
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _good_journal(path: Path) -> None:
    from dynwf.journal import Journal, encode

    journal = Journal(path)
    rows = []
    for i in range(3000):
        created = {"workflow": "w", "scope": "", "id": f"i{i}", "params": {"pad": "x" * 50}}
        rows.append((f"u{i}", 2 * i + 1, 1, "created", None, encode(created)))
        rows.append((f"u{i}", 2 * i + 2, 1, "status", None, encode({"status": "complete"})))
    journal.append(rows)
    journal.close()


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        chunk = f.read(64)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in chunk))


def _open_ms(journal: Path) -> float | None:
    """How long opening ``journal`` for writing takes to be refused (None: it opened)."""
    from dynwf.errors import JournalError
    from dynwf.journal import Journal

    started = time.perf_counter()
    try:
        Journal(journal).close()
    except JournalError:
        return (time.perf_counter() - started) * 1000
    return None


def _timed(project: Path, args: list[str]) -> tuple[float, int, int]:
    started = time.monotonic()
    done = subprocess.run(
        [PY, "-m", "dynwf", *args], cwd=project, capture_output=True, text=True, timeout=120
    )
    seconds = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return seconds, done.returncode, len(lines)


class Held:
    """A `dynwf dev` (or a bare writer) holding the project's journal while commands run."""

    def __init__(self, project: Path, kind: str) -> None:
        if kind == "dev":
            args = [PY, "-m", "dynwf", "dev", "--port", str(_free_port()), "--no-reload"]
            self.proc = subprocess.Popen(
                args, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            assert self.proc.stderr is not None
            while "serving" not in self.proc.stderr.readline():
                pass
        else:
            code = (
                "import sys, time; from dynwf.journal import Journal; "
                "j = Journal(sys.argv[1]); print('held', flush=True); time.sleep(600)"
            )
            journal = str(project / ".dynwf" / "journal.duckdb")
            self.proc = subprocess.Popen(
                [PY, "-c", code, journal], stdout=subprocess.PIPE, text=True
            )
            assert self.proc.stdout is not None
            self.proc.stdout.readline()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _lost_wal(project: Path) -> None:
    """A writer killed before any checkpoint, then its .wal deleted."""
    port = _free_port()
    proc = subprocess.Popen(
        [PY, "-m", "dynwf", "dev", "--port", str(port), "--no-reload"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    while "serving" not in proc.stderr.readline():
        pass
    import httpx

    for i in range(5):
        httpx.post(f"http://127.0.0.1:{port}/acme/start", json={"id": f"w{i}"}, timeout=30)
    proc.kill()
    proc.wait()
    (project / ".dynwf" / "journal.duckdb.wal").unlink()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "half": lambda p: os.truncate(p, p.stat().st_size // 2),
    "4k": lambda p: os.truncate(p, 4096),
    "empty": lambda p: os.truncate(p, 0),
    "flipped-header": lambda p: _flip(p, 8),
    "flipped-block": lambda p: _flip(p, 12288 + 64),
}
COMMANDS = {
    "dev": ["dev", "--port", "0", "--no-reload"],
    "run": ["run", "--tenant", "acme", "--id", "new"],
    "inspect": ["inspect"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dynwf-bench-refusal-") as tmp:
        base = Path(tmp)

        def fresh(name: str) -> Path:
            project = base / name
            shutil.copytree(FIXTURE, project, ignore=shutil.ignore_patterns(".dynwf"))
            return project

        project = fresh("baseline")
        seconds, code, _ = _timed(project, ["--help"])
        rows.append({"case": "baseline", "command": "--help", "s": seconds, "exit": code})
        for case in ["held-by-dev", "held-by-writer", *DAMAGE, "lost-wal"]:
            for command, args in COMMANDS.items():
                project = fresh(f"{case}-{command}")
                journal = project / ".dynwf" / "journal.duckdb"
                held = None
                if case.startswith("held"):
                    _good_journal(journal)
                    held = Held(project, "dev" if case == "held-by-dev" else "writer")
                elif case == "lost-wal":
                    _lost_wal(project)
                else:
                    _good_journal(journal)
                    DAMAGE[case](journal)
                try:
                    opened = _open_ms(journal)
                    seconds, code, lines = _timed(project, args)
                finally:
                    if held is not None:
                        held.stop()
                rows.append(
                    {
                        "case": case,
                        "command": command,
                        "s": seconds,
                        "exit": code,
                        "lines": lines,
                        "open_ms": opened,
                    }
                )
    if opts.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'case':<16} {'command':<8} {'seconds':>8} {'exit':>5} {'lines':>6} {'open ms':>8}")
    for row in rows:
        ms = row.get("open_ms")
        print(
            f"{row['case']:<16} {row['command']:<8} {row['s']:>8.2f} {row['exit']:>5} "
            f"{row.get('lines', ''):>6} {f'{ms:.1f}' if isinstance(ms, float) else '':>8}"
        )


if __name__ == "__main__":
    main()
