"""Shared fixtures: an engine on a temporary journal with a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from dynwf.engine import Engine, EntrypointProgram, ManualClock, TimeControl, Workflow


class Harness:
    """An engine plus the clock that drives it; ``add`` registers a workflow class."""

    def __init__(self, path: Path, **engine_kwargs: Any) -> None:
        self.path = path
        self.clock = ManualClock(start=1_800_000_000_000)
        self.kwargs = engine_kwargs
        self.classes: list[tuple[str, type[Any], dict[str, Any]]] = []
        self.engine = self._make()

    def _make(self) -> Engine:
        kwargs = dict(self.kwargs)
        kwargs.setdefault("clock", self.clock)
        eng = Engine(self.path, **kwargs)
        for name, cls, opts in self.classes:
            eng.register(
                Workflow(
                    name,
                    opts.get("binding", name.upper()),
                    EntrypointProgram(cls),
                    **{k: v for k, v in opts.items() if k != "binding"},
                )
            )
        return eng

    def add(self, name: str, cls: type[Any], **opts: Any) -> None:
        self.classes.append((name, cls, opts))
        self.engine.register(
            Workflow(name, opts.pop("binding", name.upper()), EntrypointProgram(cls), **opts)
        )

    def binding(self, name: str, scope: str = "") -> Any:
        return self.engine.binding(name, scope=scope)

    async def idle(self) -> None:
        await self.engine.wait_until_idle(timeout=300)

    async def advance(self, by: int | str) -> None:
        self.clock.advance(by)
        await asyncio.sleep(0)
        await self.idle()

    async def reopen(self, **changes: Any) -> Engine:
        """Stop the engine and start a new one on the same journal (a clean restart)."""
        await self.engine.stop()
        self.kwargs.update(changes)
        self.engine = self._make()
        await self.engine.start()
        return self.engine


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "journal.duckdb")
    await h.engine.start()
    yield h
    await h.engine.stop()


@pytest.fixture
def make_harness(tmp_path: Path) -> Callable[..., Harness]:
    def make(**kwargs: Any) -> Harness:
        return Harness(tmp_path / "journal.duckdb", **kwargs)

    return make


__all__ = ["Harness", "TimeControl"]


@pytest.fixture
def counter_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder tenants may write their execution counters to: the sandbox's one testing
    hole (DYNWF_SANDBOX_ALLOW), set for this test and the processes it starts."""
    folder = tmp_path / "counters"
    folder.mkdir()
    monkeypatch.setenv("DYNWF_SANDBOX_ALLOW", str(folder))
    return folder
