"""Engine side of isolates: one OS process per loaded worker, a warm spare, limits, eviction.

An isolate that dies (a crash, ``os._exit``, an out-of-memory kill) or is killed for
spinning past its CPU budget costs only the work it was doing: every pass running in
it ends with ``PassInterrupted`` and the engine replays those instances in a fresh
isolate, where the cut attempts count as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dynwf.dispatch._wire import Connection

log = logging.getLogger("dynwf.dispatch")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class IsolateLimits:
    """Per-isolate caps: address space in MB, CPU ms per attempt (wrangler's limits.cpu_ms)."""

    memory_mb: int = 1024
    cpu_ms: int = 30_000


def _cpu_ms(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 // _TICKS
    except (OSError, IndexError, ValueError):
        return 0


class Isolate:
    """One child process and the connection to it."""

    def __init__(self, proc: asyncio.subprocess.Process, handler: Any) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.handler = handler  # set per load: answers host/binding calls
        assert proc.stdout is not None and proc.stdin is not None
        self.conn = Connection(proc.stdout, proc.stdin, self._dispatch)
        self.attempts: dict[str, int] = {}  # in-flight attempt -> CPU ms at its start
        self.last_used = time.monotonic()
        self.killed_for: str | None = None
        self.busy = 0  # runs and fetches in flight

    async def _dispatch(self, msg: dict[str, Any]) -> Any:
        return await self.handler(msg)

    @property
    def alive(self) -> bool:
        return not self.conn.closed.done() and self.proc.returncode is None

    def attempt_started(self, token: str) -> None:
        self.attempts[token] = _cpu_ms(self.pid)

    def attempt_ended(self, token: str) -> None:
        self.attempts.pop(token, None)

    def kill(self, reason: str, *, quiet: bool = False) -> None:
        if self.proc.returncode is None:
            self.killed_for = reason
            (log.debug if quiet else log.warning)("isolate pid %s killed: %s", self.pid, reason)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def close(self) -> None:
        if self.alive:
            self.kill("evicted", quiet=True)
        await self.conn.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)


async def _spawn(limits: IsolateLimits) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "DYNWF_ISOLATE_MEMORY_MB": str(limits.memory_mb),
        "DYNWF_ISOLATE_PARENT": str(os.getpid()),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dynwf.dispatch._isolate_main",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
        # Its own session: Ctrl-C in a terminal reaches the engine, which stops its
        # isolates itself, not every isolate at once with a traceback each.
        start_new_session=True,
    )


class IsolatePool:
    """Starts isolates (keeping one warm spare), watches their CPU, evicts idle ones."""

    def __init__(
        self,
        limits: IsolateLimits,
        *,
        idle_seconds: float,
        on_evict: Callable[[Isolate], Awaitable[None]],
    ) -> None:
        self.limits = limits
        self.idle_seconds = idle_seconds
        self._spare: asyncio.Task[asyncio.subprocess.Process] | None = None
        self._live: set[Isolate] = set()
        self._watch: asyncio.Task[None] | None = None
        self._on_evict = on_evict
        self._closed = False

    def warm(self, delay: float = 0.0) -> None:
        """Boot a spare isolate (after ``delay`` s), so the next cold load does not pay for it."""
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.warm)
        elif self._spare is None and not self._closed:
            self._spare = asyncio.create_task(_spawn(self.limits))

    async def start(self, handler: Any) -> Isolate:
        # Claim the spare before awaiting it, so concurrent loads never share a process.
        # The next spare is booted by ``warm()`` shortly after this load is done (the
        # loader calls it): booting an interpreter now would compete for the CPU with
        # the tenant's import and its first step.
        spare, self._spare = self._spare, None
        proc = await (spare or _spawn(self.limits))
        iso = Isolate(proc, handler)
        self._live.add(iso)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watchdog())
        return iso

    async def _watchdog(self) -> None:
        while self._live:
            await asyncio.sleep(0.05)
            now = time.monotonic()
            for iso in list(self._live):
                if not iso.alive:
                    self._live.discard(iso)
                    continue
                if iso.busy:
                    iso.last_used = now
                if iso.attempts:
                    cpu = _cpu_ms(iso.pid)
                    if any(cpu - start > self.limits.cpu_ms for start in iso.attempts.values()):
                        iso.kill(f"an attempt used more than {self.limits.cpu_ms} ms of CPU")
                elif now - iso.last_used > self.idle_seconds:
                    self._live.discard(iso)
                    await self._on_evict(iso)

    async def close(self) -> None:
        self._closed = True
        for iso in list(self._live):
            await iso.close()
        self._live.clear()
        if self._spare is not None:
            proc = await self._spare
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            self._spare = None
        if self._watch is not None:
            self._watch.cancel()
