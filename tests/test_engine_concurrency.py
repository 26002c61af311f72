"""``workflows[].concurrency.limit``: at most N instances of a workflow run at once; the
others stay queued until a slot of that workflow frees."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dynwf.config import load_config, validate_config
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness
from tests.test_config_validate import _toml_project

GATE: dict[str, asyncio.Event] = {}


class Gated(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do()
        async def work() -> str:
            await GATE["open"].wait()
            return "done"

        return await work()


async def wait_for(pred: Any) -> None:
    for _ in range(10_000):  # a hang guard, not a timing assertion
        if pred():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def test_extra_instances_stay_queued_until_a_slot_frees(harness: Harness) -> None:
    GATE["open"] = asyncio.Event()
    harness.add("limited", Gated, concurrency_limit=2)
    harness.add("free", Gated)
    limited = await harness.binding("limited").create_batch([{"id": f"l{i}"} for i in range(5)])
    free = await harness.binding("free").create_batch([{"id": f"f{i}"} for i in range(3)])
    await wait_for(lambda: harness.engine.passes_running == 5)
    statuses = [(await i.status())["status"] for i in limited]
    assert sorted(statuses) == ["queued", "queued", "queued", "running", "running"]
    assert [(await i.status())["status"] for i in free] == ["running"] * 3  # no limit there
    GATE["open"].set()
    await harness.idle()
    assert [(await i.status())["status"] for i in limited] == ["complete"] * 5


def test_concurrency_limit_is_read_and_checked_from_the_config(tmp_path: Path) -> None:
    head = '[[workflows]]\nname = "w"\nbinding = "W"\nclass_name = "DynamicWorkflow"\n'
    _toml_project(tmp_path, head + "concurrency = { limit = 3 }\n")
    assert validate_config(tmp_path).diagnostics == ()
    assert load_config(tmp_path).workflows[0].concurrency_limit == 3


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{ limit = 0 }", "field must be a positive integer but got 0."),
        ("{ limit = 1.5 }", "field must be a positive integer but got 1.5."),
        ("{ }", "field must be a positive integer but got nothing."),
        ("5", 'have an object "concurrency" field'),
    ],
)
def test_bad_concurrency_is_a_validate_error(tmp_path: Path, value: str, says: str) -> None:
    head = '[[workflows]]\nname = "w"\nbinding = "W"\nclass_name = "DynamicWorkflow"\n'
    _toml_project(tmp_path, head + f"concurrency = {value}\n")
    errors = [d for d in validate_config(tmp_path).diagnostics if d.severity == "error"]
    assert len(errors) == 1 and says in errors[0].message
