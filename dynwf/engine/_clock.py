"""Clocks: the real one, and a manual one tests advance by hand."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from dynwf.engine._config import parse_duration


class Clock(Protocol):
    def now_ms(self) -> int: ...

    async def wait(self, delay_ms: int | None, changed: asyncio.Event) -> None:
        """Return after ``delay_ms`` of this clock's time, or when ``changed`` is set."""


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def wait(self, delay_ms: int | None, changed: asyncio.Event) -> None:
        if delay_ms is None:
            await changed.wait()
            return
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives
        # just after ``changed`` is set, and the engine's timer loop then outlives stop().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(delay_ms, 0) / 1000):
                await changed.wait()


class ManualClock:
    """Time that moves only when ``advance`` or ``set`` is called."""

    def __init__(self, start: datetime | int | None = None) -> None:
        if start is None:
            self._now = time.time_ns() // 1_000_000
        elif isinstance(start, datetime):
            self._now = int(start.timestamp() * 1000)
        else:
            self._now = int(start)
        self._waiters: set[asyncio.Event] = set()

    def now_ms(self) -> int:
        return self._now

    def advance(self, by: int | str | timedelta) -> None:
        """Move time forward by ms, ``"<n> <unit>"`` or a timedelta; due timers fire."""
        if isinstance(by, timedelta):
            ms = int(by.total_seconds() * 1000)
        else:
            ms = parse_duration(by, what="ManualClock.advance")
        self.set(self._now + ms)

    def set(self, ms: int) -> None:
        if ms < self._now:
            raise ValueError(f"ManualClock cannot go back in time ({ms} < {self._now})")
        self._now = ms
        for ev in self._waiters:
            ev.set()

    async def wait(self, delay_ms: int | None, changed: asyncio.Event) -> None:
        self._waiters.add(changed)
        try:
            await changed.wait()
        finally:
            self._waiters.discard(changed)


def iso_ms(ms: int | None) -> str | None:
    """ISO 8601 UTC with milliseconds and a Z, as the explorer API writes times."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
