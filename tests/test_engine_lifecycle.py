"""Instances: ids, create/create_batch/get, status, pause/resume/terminate/restart, recovery."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynwf.engine._states import TRANSITIONS, Event, Status, transition
from dynwf.errors import (
    InstanceExistsError,
    InstanceNotFoundError,
    InvalidStateError,
    PayloadError,
    ValidationError,
)
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


class Sleeper(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do()
        async def before() -> int:
            return 1

        await before()
        await step.sleep("nap", "1 hour")

        @step.do()
        async def after() -> int:
            return 2

        return await before() + await after()


async def test_create_with_duplicate_id_raises_naming_id(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    await harness.binding("wf").create({"id": "dup"})
    with pytest.raises(InstanceExistsError) as err:
        await harness.binding("wf").create({"id": "dup"})
    assert "'dup'" in str(err.value)


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x" * 101, 7])
async def test_create_rejects_bad_id(harness: Harness, bad: Any) -> None:
    harness.add("wf", Sleeper)
    with pytest.raises(ValidationError) as err:
        await harness.binding("wf").create({"id": bad})
    assert repr(bad) in str(err.value)
    assert harness.engine.instances() == []


async def test_create_default_id_is_uuid_and_params_checked(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    inst = await harness.binding("wf").create()
    assert len(inst.id) == 36 and inst.id.count("-") == 4
    with pytest.raises(PayloadError):
        await harness.binding("wf").create({"params": {"when": object()}})
    with pytest.raises(PayloadError):
        await harness.binding("wf").create({"params": "x" * (1024 * 1024 + 1)})


async def test_create_is_durable_before_returning(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    await harness.binding("wf").create({"id": "durable"})
    rows = harness.engine.journal.instances()
    assert [r.id for r in rows] == ["durable"]


async def test_create_batch_skips_existing_and_validates_size(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    b = harness.binding("wf")
    await b.create({"id": "a"})
    made = await b.createBatch([{"id": "a"}, {"id": "b"}, {"id": "c", "params": 1}, {"id": "b"}])
    assert [i.id for i in made] == ["b", "c"]
    for bad in ([], [{}] * 101):
        with pytest.raises(ValidationError):
            await b.create_batch(bad)
    with pytest.raises(ValidationError):
        await b.create_batch([{"id": "ok1"}, {"id": "bad id"}])
    with pytest.raises(InstanceNotFoundError):
        await b.get("ok1")  # nothing of a rejected batch was created


async def test_get_unknown_raises_not_found(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    with pytest.raises(InstanceNotFoundError) as err:
        await harness.binding("wf").get("nope")
    assert err.value.code == "instance.not_found"


async def test_scopes_do_not_see_each_other(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    a, b = harness.binding("wf", scope="tenant-a"), harness.binding("wf", scope="tenant-b")
    await a.create({"id": "same"})
    await b.create({"id": "same"})
    await a.create({"id": "only-a"})
    with pytest.raises(InstanceNotFoundError):
        await b.get("only-a")


async def test_pause_keeps_remaining_sleep_time(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await harness.advance("20 minutes")
    await inst.pause()
    assert (await inst.status())["status"] == "paused"
    await harness.advance("5 hours")
    assert (await inst.status())["status"] == "paused"
    await inst.resume()
    await harness.idle()
    assert (await inst.status())["status"] == "waiting"
    await harness.advance("39 minutes")
    assert (await inst.status())["status"] == "waiting"
    await harness.advance("1 minute")
    assert (await inst.status())["output"] == 3


async def test_pause_while_running_waits_for_step_boundary(harness: Harness) -> None:
    gate, release = asyncio.Event(), asyncio.Event()

    class Busy(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do()
            async def one() -> int:
                gate.set()
                await release.wait()
                return 1

            @step.do()
            async def two() -> int:
                return 2

            return await one() + await two()

    harness.add("wf", Busy)
    inst = await harness.binding("wf").create({"id": "p"})
    await gate.wait()
    await inst.pause()
    assert (await inst.status())["status"] == "waitingForPause"
    release.set()
    await harness.idle()
    assert (await inst.status())["status"] == "paused"
    st = harness.engine.lookup("wf", "", "p")
    assert st.steps["do:one#1"].done and "do:two#1" not in st.steps
    await inst.resume()
    await harness.idle()
    assert (await inst.status())["output"] == 3


async def test_resume_is_noop_unless_paused(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await inst.resume()
    assert (await inst.status())["status"] == "waiting"


async def test_terminate_stops_forever_and_raises_when_finished(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await inst.terminate()
    await harness.advance("2 hours")
    assert (await inst.status())["status"] == "terminated"
    with pytest.raises(InvalidStateError):
        await inst.terminate()
    with pytest.raises(InvalidStateError):
        await inst.pause()


async def test_restart_wipes_journal_and_keeps_event(harness: Harness) -> None:
    runs: list[Any] = []

    class Once(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do()
            async def work() -> Any:
                runs.append(event.payload)
                return event.payload

            return await work()

    harness.add("wf", Once)
    inst = await harness.binding("wf").create({"params": {"k": 1}})
    await harness.idle()
    await inst.restart()
    await harness.idle()
    assert runs == [{"k": 1}, {"k": 1}]
    assert (await inst.status())["output"] == {"k": 1}


async def test_engine_restart_recovers_timers_and_runnable_instances(harness: Harness) -> None:
    harness.add("wf", Sleeper)
    inst = await harness.binding("wf").create({"id": "rec"})
    await harness.idle()
    await harness.reopen()
    await harness.advance("1 hour")
    inst = await harness.binding("wf").get("rec")
    assert (await inst.status())["output"] == 3


async def test_max_running_caps_passes_and_waiting_do_not_count(make_harness: Any) -> None:
    h = make_harness(max_running=2)
    await h.engine.start()
    try:
        peak = {"now": 0, "max": 0}

        class Counted(WorkflowEntrypoint):
            async def run(self, event: Any, step: Any) -> Any:
                @step.do()
                async def work() -> int:
                    peak["now"] += 1
                    peak["max"] = max(peak["max"], peak["now"])
                    await asyncio.sleep(0.01)
                    peak["now"] -= 1
                    return 1

                await work()
                await step.sleep("nap", "1 hour")
                return 1

        h.add("wf", Counted)
        insts = await h.binding("wf").create_batch([{"id": f"i{n}"} for n in range(6)])
        await h.idle()
        assert peak["max"] == 2
        assert {(await i.status())["status"] for i in insts} == {"waiting"}
        await h.advance("1 hour")
        assert {(await i.status())["status"] for i in insts} == {"complete"}
    finally:
        await h.engine.stop()


def test_state_machine_table_rejects_and_noops() -> None:
    assert transition(Status.WAITING, Event.PAUSE) is Status.PAUSED
    assert transition(Status.RUNNING, Event.PAUSE) is Status.WAITING_FOR_PAUSE
    assert transition(Status.WAITING, Event.RESUME) is Status.WAITING
    with pytest.raises(InvalidStateError) as err:
        transition(Status.COMPLETE, Event.TERMINATE, instance="x")
    assert "'x'" in str(err.value) and "restart" in str(err.value)
    assert set(TRANSITIONS) == set(Status)


async def test_restart_with_skip_sleeps_ends_a_sleep_journaled_before(harness: Harness) -> None:
    from dynwf.engine import TimeControl

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            await step.sleep("nap", "1 day")
            return "awake"

    harness.add("wf", WF)
    inst = await harness.binding("wf").create({"id": "n"})
    await harness.idle()
    assert (await inst.status())["status"] == "waiting"
    await harness.reopen(time=TimeControl(skip_sleeps=True))  # the clock has not moved
    await harness.idle()
    assert (await (await harness.binding("wf").get("n")).status())["output"] == "awake"
