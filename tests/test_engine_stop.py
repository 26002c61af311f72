"""Stopping the engine: it returns whatever its timer loop was doing when stop() came."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from dynwf.engine import Engine, SystemClock
from tests.conftest import Harness
from tests.test_engine_lifecycle import Sleeper


@pytest.mark.parametrize("turns", range(6))
async def test_system_clock_wait_is_cancelled_even_just_after_its_event_is_set(
    turns: int,
) -> None:
    # asyncio.wait_for on Python 3.11 returns instead of raising when the cancellation
    # lands while its awaitable has just finished: a loop around it then never ends.
    changed = asyncio.Event()

    async def timer_loop() -> None:
        while True:
            changed.clear()
            await SystemClock().wait(3_600_000, changed)

    task = asyncio.create_task(timer_loop())
    await asyncio.sleep(0)
    changed.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(30):  # a hang, not a speed
            await asyncio.shield(task)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_stop_right_after_a_sleep_is_armed_returns(tmp_path: Path) -> None:
    # An instance that went to sleep for an hour wakes the timer loop (a new earliest
    # timer) in the same turn as stop(): stop() must not wait out that hour.
    h = Harness(tmp_path / "journal.duckdb", clock=SystemClock())
    h.add("wf", Sleeper)
    eng: Engine = h.engine
    await eng.start()
    await h.binding("wf").create({"id": "s"})
    await eng.wait_until_idle(timeout=60)
    status: Any = await (await h.binding("wf").get("s")).status()
    assert status["status"] == "waiting"
    eng.scheduler.timer_changed.set()
    async with asyncio.timeout(60):  # a hang, not a speed: the sleep has 1 hour left
        await eng.stop()
