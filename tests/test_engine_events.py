"""wait_for_event and send_event: buffering, FIFO per type, timeouts, validation."""

from __future__ import annotations

from typing import Any

import pytest

from dynwf.errors import InvalidStateError, PayloadError, ValidationError
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


class Waiter(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        got = []
        for i in range((event.payload or {}).get("n", 1)):
            ev = await step.wait_for_event(f"w{i}", "approve", timeout="1 hour")
            got.append(ev["payload"])
            assert ev["type"] == "approve" and ev["timestamp"].tzinfo is not None
        return got


async def test_event_sent_before_wait_is_buffered(harness: Harness) -> None:
    class Late(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            await step.sleep("first", "1 minute")
            ev = await step.wait_for_event("w", "approve")
            return ev.payload

    harness.add("wf", Late)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await inst.send_event({"type": "approve", "payload": {"by": "ann"}})
    await harness.idle()
    assert (await inst.status())["status"] == "waiting"
    await harness.advance("1 minute")
    assert (await inst.status())["output"] == {"by": "ann"}


async def test_events_are_fifo_per_type_and_one_per_waiter(harness: Harness) -> None:
    harness.add("wf", Waiter)
    inst = await harness.binding("wf").create({"params": {"n": 2}})
    await inst.send_event({"type": "other", "payload": "x"})
    for n in (1, 2, 3):
        await inst.send_event({"type": "approve", "payload": n})
    await harness.idle()
    assert (await inst.status())["output"] == [1, 2]
    st = harness.engine.lookup("wf", "", inst.id)
    assert [e.consumed for e in st.events] == [False, True, True, False]


async def test_event_wakes_waiting_instance(harness: Harness) -> None:
    harness.add("wf", Waiter)
    inst = await harness.binding("wf").create()
    await harness.idle()
    assert (await inst.status())["status"] == "waiting"
    await inst.send_event({"type": "approve", "payload": "ok"})
    await harness.idle()
    assert (await inst.status())["output"] == ["ok"]


async def test_wait_timeout_is_catchable_and_never_consumes_later_event(harness: Harness) -> None:
    class Timeout(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            try:
                await step.wait_for_event("w", "approve", timeout="10 seconds")
            except Exception as exc:
                res = type(exc).__name__
            ev = await step.wait_for_event("w2", "approve", timeout="1 hour")
            return [res, ev["payload"]]

    harness.add("wf", Timeout)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await harness.advance("10 seconds")
    await inst.send_event({"type": "approve", "payload": "late"})
    await harness.idle()
    assert (await inst.status())["output"] == ["WorkflowTimeoutError", "late"]


async def test_uncaught_wait_timeout_errors_instance(harness: Harness) -> None:
    harness.add("wf", Waiter)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await harness.advance("1 hour")
    status = await inst.status()
    assert status["status"] == "errored" and status["error"]["name"] == "WorkflowTimeoutError"


@pytest.mark.parametrize("bad", ["", "has space", "-lead", "x" * 101, 5])
async def test_send_event_rejects_bad_type(harness: Harness, bad: Any) -> None:
    harness.add("wf", Waiter)
    inst = await harness.binding("wf").create()
    with pytest.raises(ValidationError) as err:
        await inst.send_event({"type": bad, "payload": 1})
    assert "event type" in str(err.value)


async def test_send_event_rejects_oversize_payload_and_changes_nothing(harness: Harness) -> None:
    harness.add("wf", Waiter)
    inst = await harness.binding("wf").create()
    with pytest.raises(PayloadError):
        await inst.send_event({"type": "approve", "payload": "x" * (1024 * 1024)})
    assert harness.engine.lookup("wf", "", inst.id).events == []


async def test_send_event_to_finished_instance_raises(harness: Harness) -> None:
    class Done(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return 1

    harness.add("wf", Done)
    inst = await harness.binding("wf").create()
    await harness.idle()
    with pytest.raises(InvalidStateError) as err:
        await inst.send_event({"type": "approve"})
    assert "complete" in str(err.value)


async def test_buffered_event_survives_engine_restart(harness: Harness) -> None:
    class Late(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            await step.sleep("first", "1 minute")
            return (await step.wait_for_event("w", "approve")).payload

    harness.add("wf", Late)
    inst = await harness.binding("wf").create({"id": "buf"})
    await harness.idle()
    await inst.send_event({"type": "approve", "payload": "kept"})
    await harness.reopen()
    await harness.advance("1 minute")
    status = await (await harness.binding("wf").get("buf")).status()
    assert status["output"] == "kept"
