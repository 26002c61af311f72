"""The memory sampler of bench/dispatch.py, in a process of its own.

Standard library only, so that starting it costs an interpreter start and no more:
``python bench/_memsample.py PID EVERY PSS_EVERY`` samples PID and its descendants
until its stdin closes, then prints their peaks as JSON. ``MemSampler`` (a context
manager) starts it and reads the result.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def rss_kb(pid: int) -> int:
    """RSS of a process in KiB from /proc/<pid>/statm (a counter: cheap); 0 if gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def mem_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc/<pid>/smaps_rollup; (0, 0) if gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def direct_children(pid: int) -> list[int] | None:
    """The children of ``pid`` from /proc/<pid>/task/*/children (None where the kernel
    does not have that file)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None
        except (OSError, ValueError):
            continue
    return found


def children(parent: int) -> list[int]:
    """Every descendant of ``parent``: the isolates are the template's children."""
    found, todo = [], [parent]
    while todo:
        kids = direct_children(todo.pop())
        if kids is None:
            return children_by_scan(parent)
        found.extend(kids)
        todo.extend(kids)
    return found


def children_by_scan(parent: int) -> list[int]:
    """``_children`` by reading every process's parent from /proc (slower)."""
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [parent]
    while todo:
        for pid in kids.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


class MemSampler:
    """Peak of (engine RSS + children's RSS) and of the PSS sum, sampled periodically.

    The sampling runs in its own process (``python bench/_memsample.py PID``, which
    imports nothing but the standard library): the kernel walks a process's page tables
    to make smaps_rollup, and reading it (and scanning /proc for the children) for ~70
    processes every 100 ms on the engine's event loop took ~74 ms of each 100 ms; in a
    thread of the engine it still cost the 1,000-tenant run ~1.3 s of GIL. Entering the
    block waits until the sampler has started and taken its first sample, so neither
    its interpreter start nor its imports fall inside what the block times. RSS (statm)
    every ``every`` s, PSS every ``pss_every``-th sample (every 2.5 s by default: with
    ~70 processes one PSS sample costs ~50 ms of CPU, one RSS sample ~4 ms, and the
    1,000-tenant row is CPU-bound on a 2-core machine); one last sample of both when
    the block ends.
    """

    def __init__(self, every: float = 0.25, pss_every: int = 10) -> None:
        self.every, self.pss_every = every, pss_every
        self.peak_rss_kb = self.peak_pss_kb = self.peak_children = 0
        self.engine_rss_at_peak_kb = 0
        self._samples = 0
        self._proc: subprocess.Popen[str] | None = None

    def sample(self, pid: int, pss: bool = False) -> None:
        kids = children(pid)
        own_rss = rss_kb(pid)
        rss = own_rss + sum(rss_kb(kid) for kid in kids)
        if rss > self.peak_rss_kb:
            self.peak_rss_kb, self.engine_rss_at_peak_kb = rss, own_rss
        self.peak_children = max(self.peak_children, len(kids))
        self._samples += 1
        if pss or self._samples % self.pss_every == 1:
            total = mem_kb(pid)[1] + sum(mem_kb(kid)[1] for kid in kids)
            self.peak_pss_kb = max(self.peak_pss_kb, total)

    def serve(self, pid: int) -> None:
        """In the sampling process: sample ``pid`` until stdin closes, then print the peaks."""
        self.sample(pid)
        print("ready", flush=True)
        while not select.select([sys.stdin], [], [], self.every)[0]:
            self.sample(pid)
        self.sample(pid, pss=True)
        print(json.dumps(self._peaks()), flush=True)

    def _peaks(self) -> dict[str, int]:
        keys = ("peak_rss_kb", "peak_pss_kb", "peak_children", "engine_rss_at_peak_kb")
        return {k: getattr(self, k) for k in keys}

    def __enter__(self) -> MemSampler:
        cmd = [sys.executable, __file__, str(os.getpid()), str(self.every), str(self.pss_every)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        if self._proc.stdout.readline().strip() != "ready":
            self._proc.kill()
            raise RuntimeError("the memory sampler did not start (see its error above)")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._proc is not None
        out, _ = self._proc.communicate(timeout=120)
        for key, value in json.loads(out).items():
            setattr(self, key, value)


if __name__ == "__main__":
    MemSampler(float(sys.argv[2]), int(sys.argv[3])).serve(int(sys.argv[1]))
