"""create_batch's dict forms: ``{"count": n, "params"?}`` and ``{"instances": [...]}``."""

from __future__ import annotations

from typing import Any

import pytest

from dynwf.errors import ValidationError
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


class Echo(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do()
        async def echo() -> Any:
            return event["payload"]

        return await echo()


async def test_count_form_makes_n_instances_with_the_same_params(harness: Harness) -> None:
    harness.add("wf", Echo)
    out = await harness.binding("wf").create_batch({"count": 3, "params": {"n": 1}})
    assert out["errors"] == [] and len(out["created"]) == 3
    assert len({i.id for i in out["created"]}) == 3
    await harness.idle()
    for inst in out["created"]:
        assert await inst.status() == {"status": "complete", "output": {"n": 1}, "error": None}


async def test_instances_form_reports_each_item_it_did_not_make(harness: Harness) -> None:
    harness.add("wf", Echo)
    b = harness.binding("wf")
    await b.create({"id": "taken"})
    out = await b.createBatch(
        {
            "instances": [
                {"id": "a", "params": 1},
                {"id": "taken"},
                {"id": "bad id"},
                {"id": "a"},
                {"params": 2},
            ]
        }
    )
    assert [i.id for i in out["created"]][:1] == ["a"] and len(out["created"]) == 2
    assert [(e["index"], e["id"], e["code"]) for e in out["errors"]] == [
        (1, "taken", "instance.already_exists"),
        (2, "bad id", "instance.invalid_options"),
        (3, "a", "instance.already_exists"),
    ]
    assert "'bad id'" in out["errors"][1]["message"]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"count": 0}, "from 1 to 100"),
        ({"count": 101}, "from 1 to 100"),
        ({"count": True}, "from 1 to 100"),
        ({"count": "3"}, "from 1 to 100"),
        ({"count": 2, "instances": []}, "exactly one of"),
        ({}, "exactly one of"),
        ({"count": 2, "id": "x"}, "unknown key(s) ['id']"),
        ({"instances": []}, "list of 1 to 100"),
        ({"instances": [{"id": "x"}] * 101}, "list of 1 to 100"),
        ({"instances": ["x"]}, "'instances'[0] must be a dict"),
        ({"instances": [{}], "params": 1}, "unknown key(s) ['params']"),
    ],
)
async def test_bad_forms_raise_and_create_nothing(harness: Harness, bad: Any, says: str) -> None:
    harness.add("wf", Echo)
    with pytest.raises(ValidationError) as err:
        await harness.binding("wf").create_batch(bad)
    assert says in str(err.value)
    assert harness.engine.instances() == []


async def test_list_form_is_unchanged(harness: Harness) -> None:
    harness.add("wf", Echo)
    made = await harness.binding("wf").create_batch([{"id": "x"}, {"id": "y"}])
    assert [i.id for i in made] == ["x", "y"]
