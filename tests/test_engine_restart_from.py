"""``restart({"from": {"name", "count"?, "type"?}})``: keep the journal before the step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dynwf.errors import ValidationError
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


class Counted(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        counts = Path(event["payload"]["counts"])

        def ran(name: str) -> None:
            with counts.open("a") as f:
                f.write(name + "\n")

        def named(name: str) -> Any:
            async def do() -> str:
                ran(name)
                return name.upper()

            return step.do(name)(do)

        out = [await named(name)() for name in ("a", "b", "a")]
        await step.sleep("nap", "1 second")

        @step.do("c")
        async def c() -> str:
            ran("c")
            return "C"

        out.append(await c())
        return "".join(out)


def runs(path: Path) -> list[str]:
    return path.read_text().split()


async def test_restart_from_a_step_keeps_the_steps_before_it(
    harness: Harness, tmp_path: Path
) -> None:
    harness.add("wf", Counted)
    counts = tmp_path / "runs.txt"
    inst = await harness.binding("wf").create({"id": "r", "params": {"counts": str(counts)}})
    await harness.idle()
    await harness.advance("2 seconds")
    assert (await inst.status())["output"] == "ABAC"
    assert runs(counts) == ["a", "b", "a", "c"]

    await inst.restart({"from": {"name": "a", "count": 2}})
    await harness.idle()
    await harness.advance("2 seconds")
    # the second "a" and everything after it ran again; the first "a" and "b" did not
    assert runs(counts) == ["a", "b", "a", "c", "a", "c"]
    assert (await inst.status())["output"] == "ABAC"

    await inst.restart({"from": {"name": "nap", "type": "sleep"}})
    await harness.idle()
    assert (await inst.status())["status"] == "waiting"  # the nap is slept again
    await harness.advance("2 seconds")
    assert runs(counts)[-1:] == ["c"] and len(runs(counts)) == 7

    await inst.restart()  # from the top, as before
    await harness.idle()
    await harness.advance("2 seconds")
    assert len(runs(counts)) == 11


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"from": {"name": "nope"}}, "from step 'nope': its journal has no such step"),
        ({"from": {"name": "a", "count": 3}}, "'a' (call 3)"),
        ({"from": {"name": "a", "type": "sleep"}}, "of type 'sleep'"),
        ({"from": {"name": "a", "count": 0}}, "count must be an integer >= 1"),
        ({"from": {"name": "a", "type": "step"}}, "type must be one of"),
        ({"from": {"count": 1}}, "with a step 'name'"),
        ({"from": {"name": "a", "when": 1}}, "unknown key(s) ['when']"),
        ({"at": "a"}, "unknown restart option(s) ['at']"),
    ],
)
async def test_restart_from_bad_or_unknown_step_changes_nothing(
    harness: Harness, tmp_path: Path, options: Any, says: str
) -> None:
    harness.add("wf", Counted)
    counts = tmp_path / "runs.txt"
    inst = await harness.binding("wf").create({"id": "r", "params": {"counts": str(counts)}})
    await harness.idle()
    await harness.advance("2 seconds")
    before = await inst.status()
    with pytest.raises(ValidationError) as err:
        await inst.restart(options)
    assert says in str(err.value)
    await harness.idle()
    assert await inst.status() == before
    assert runs(counts) == ["a", "b", "a", "c"]


async def test_restart_from_survives_an_engine_restart(harness: Harness, tmp_path: Path) -> None:
    harness.add("wf", Counted)
    counts = tmp_path / "runs.txt"
    inst = await harness.binding("wf").create({"id": "r", "params": {"counts": str(counts)}})
    await harness.idle()
    await harness.advance("2 seconds")
    await harness.engine.stop()  # a stopped engine journals the restart for the next one
    harness.engine = harness._make()
    await harness.engine.start()
    st = harness.engine.lookup("wf", "", "r")
    await harness.engine.restart(st, {"from": {"name": "c"}})
    await harness.reopen()
    await harness.idle()
    assert runs(counts) == ["a", "b", "a", "c", "c"]
    assert (await (await harness.binding("wf").get(inst.id)).status())["output"] == "ABAC"
