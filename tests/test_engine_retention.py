"""``create({"retention": {"successRetention", "errorRetention"}})``: a finished instance
past its retention is gone, and its facts leave the journal."""

from __future__ import annotations

from typing import Any

import pytest

from dynwf.engine import instance_detail
from dynwf.errors import InstanceNotFoundError, ValidationError
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


class Quick(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do()
        async def work() -> Any:
            if event["payload"] == "fail":
                raise ValueError("no")
            return event["payload"]

        return await work()


def fact_count(h: Harness, uid: str) -> int:
    return len(h.engine.journal.facts([uid]).get(uid, []))


async def test_a_complete_instance_expires_after_its_success_retention(harness: Harness) -> None:
    harness.add("wf", Quick)
    b = harness.binding("wf")
    inst = await b.create(
        {"id": "r", "params": 1, "retention": {"successRetention": "1 hour", "errorRetention": 5}}
    )
    kept = await b.create({"id": "k", "params": 2})
    await harness.idle()
    st = harness.engine.lookup("wf", "", "r")
    assert st.ended is not None
    assert instance_detail(st)["expires"] is not None
    assert instance_detail(harness.engine.lookup("wf", "", "k"))["expires"] is None
    assert st.expires_at == st.ended + 3_600_000
    uid = st.uid
    await harness.advance(3_599_999)
    assert (await inst.status())["status"] == "complete"
    await harness.advance(1)
    with pytest.raises(InstanceNotFoundError):
        await b.get("r")
    assert [r.id for r in harness.engine.instances(workflow="wf")] == ["k"]
    assert fact_count(harness, uid) == 1  # only the tombstone is left
    assert (await kept.status())["status"] == "complete"
    # the id is free again, and a restart of the engine does not bring it back
    await harness.reopen()
    with pytest.raises(InstanceNotFoundError):
        await harness.binding("wf").get("r")


async def test_error_retention_and_expiry_found_at_start(harness: Harness) -> None:
    harness.add("wf", Quick)
    b = harness.binding("wf")
    await b.create({"id": "e", "params": "fail", "retention": {"errorRetention": "1 day"}})
    await b.create({"id": "s", "params": 1, "retention": {"errorRetention": "1 day"}})
    await harness.idle()
    for _ in range(6):  # the retries of "e" run out, one per advance
        await harness.advance("10 minutes")
    assert harness.engine.lookup("wf", "", "e").status.value == "errored"
    await harness.engine.stop()
    harness.clock.advance("2 days")  # it expires while no engine runs
    harness.engine = harness._make()
    await harness.engine.start()
    await harness.idle()
    assert [r.id for r in harness.engine.instances(workflow="wf")] == ["s"]  # no successRetention


async def test_a_restart_before_expiry_keeps_the_instance(harness: Harness) -> None:
    harness.add("wf", Quick)
    b = harness.binding("wf")
    inst = await b.create({"id": "r", "params": 1, "retention": {"successRetention": 1000}})
    await harness.idle()
    await harness.advance(500)
    await inst.restart()
    await harness.idle()
    await harness.advance(600)  # past the first end's expiry, not the second's
    assert (await inst.status())["status"] == "complete"
    await harness.advance(400)
    with pytest.raises(InstanceNotFoundError):
        await b.get("r")


@pytest.mark.parametrize(
    ("retention", "says"),
    [
        ("1 day", "must be a dict"),
        ({"success": "1 day"}, "unknown retention key(s) ['success']"),
        ({"successRetention": "soon"}, "retention.successRetention of instance 'x'"),
        ({"errorRetention": -1}, "retention.errorRetention of instance 'x'"),
    ],
)
async def test_bad_retention_creates_nothing(harness: Harness, retention: Any, says: str) -> None:
    harness.add("wf", Quick)
    with pytest.raises(ValidationError) as err:
        await harness.binding("wf").create({"id": "x", "retention": retention})
    assert says in str(err.value)
    assert harness.engine.instances() == []
