"""Delete: ``instance.delete()`` and ``delete_batch`` / ``deleteBatch`` through the binding."""

from __future__ import annotations

from typing import Any

import pytest

from dynwf.errors import InstanceNotFoundError, ValidationError
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


class Napper(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do()
        async def first() -> int:
            return 1

        await first()
        await step.sleep("nap", "1 hour")
        return 2


async def test_instance_delete_stops_it_and_frees_its_id(harness: Harness) -> None:
    harness.add("wf", Napper)
    b = harness.binding("wf")
    inst = await b.create({"id": "x"})
    await harness.idle()
    assert (await inst.status())["status"] == "waiting"
    await inst.delete()
    with pytest.raises(InstanceNotFoundError):
        await b.get("x")
    assert harness.engine.instances(workflow="wf") == []
    # the nap's timer fires into nothing, and the id is free for a new instance
    await harness.advance("2 hours")
    again = await b.create({"id": "x"})
    await harness.idle()
    assert (await again.status())["status"] == "waiting"
    with pytest.raises(InstanceNotFoundError):
        await inst.delete()  # the old handle does not reach the new instance
    assert (await again.status())["status"] == "waiting"


async def test_delete_batch_reports_deleted_and_errors_and_counts_duplicates_once(
    harness: Harness,
) -> None:
    harness.add("wf", Napper)
    b = harness.binding("wf")
    await b.create_batch([{"id": "a"}, {"id": "b"}, {"id": "c"}])
    await harness.idle()
    out = await b.deleteBatch(["a", "nope", "b", "a"])
    assert out["deleted"] == [{"id": "a"}, {"id": "b"}]
    assert [(e["id"], e["code"]) for e in out["errors"]] == [("nope", "instance.not_found")]
    assert "'nope'" in out["errors"][0]["message"]
    assert [r.id for r in harness.engine.instances(workflow="wf")] == ["c"]


@pytest.mark.parametrize("bad", [[], ["x"] * 101, "a", [1], None])
async def test_delete_batch_bad_input_changes_nothing(harness: Harness, bad: Any) -> None:
    harness.add("wf", Napper)
    b = harness.binding("wf")
    await b.create({"id": "x"})
    with pytest.raises(ValidationError, match="delete_batch takes"):
        await b.delete_batch(bad)
    assert [r.id for r in harness.engine.instances(workflow="wf")] == ["x"]


async def test_delete_batch_is_scoped_to_the_tenant(harness: Harness) -> None:
    harness.add("wf", Napper)
    await harness.binding("wf", scope="acme").create({"id": "same"})
    await harness.binding("wf", scope="globex").create({"id": "same"})
    out = await harness.binding("wf", scope="acme").delete_batch(["same"])
    assert out == {"deleted": [{"id": "same"}], "errors": []}
    assert [(r.scope, r.id) for r in harness.engine.instances(workflow="wf")] == [
        ("globex", "same")
    ]


async def test_deleted_instances_stay_deleted_after_a_restart(harness: Harness) -> None:
    harness.add("wf", Napper)
    b = harness.binding("wf")
    await b.create_batch([{"id": "a"}, {"id": "b"}])
    await harness.idle()
    await b.delete_batch(["a"])
    await harness.reopen()
    assert [r.id for r in harness.engine.instances(workflow="wf")] == ["b"]
    with pytest.raises(InstanceNotFoundError):
        await harness.binding("wf").get("a")
