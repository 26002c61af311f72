"""dynwf.testing: each introspection call, plus crash_at / evict_at / hibernate_every_step."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dynwf.errors import ValidationError
from dynwf.testing import (
    IntrospectionTimeout,
    ProjectHarness,
    introspect_workflow,
    introspect_workflow_instance,
)

FIXTURE = Path(__file__).parent / "fixtures" / "project_two_tenants"
pytestmark = pytest.mark.slow

PROBE = """
from workers import WorkflowEntrypoint, python_from_rpc

outside = {"n": 0}


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        outside["n"] += 1

        @step.do()
        async def fetch():
            return 1

        @step.do(config={"retries": {"limit": 2, "delay": "1 hour"}, "timeout": "1 minute"})
        async def charge(fetch):
            return fetch + 10

        first = await fetch()
        await step.sleep("cool", "1 hour")
        paid = await charge()
        ev = python_from_rpc(await step.wait_for_event("approval", "approved", timeout="1 hour"))
        return {"first": first, "paid": paid, "by": ev["payload"], "passes": outside["n"]}
"""


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[ProjectHarness]:
    root = tmp_path / "platform"
    shutil.copytree(FIXTURE, root)
    (root / "tenants" / "probe").mkdir()
    (root / "tenants" / "probe" / "worker.py").write_text(PROBE)
    harness = ProjectHarness(root, tmp_path / "state", isolation="inline")
    await harness.start()
    yield harness
    await harness.stop()


async def test_disable_sleeps_and_mock_event_complete_the_run(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "i")
    await inst.modify(
        lambda m: (m.disable_sleeps(), m.mock_event({"type": "approved", "payload": "ann"}))
    )
    await b.create({"id": "i"})
    await inst.wait_for_status("complete")
    out = await inst.get_output()
    assert out["first"] == 1 and out["paid"] == 11 and out["by"] == "ann"
    assert await inst.get_error() is None


async def test_wait_for_step_result_and_timeout_message(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "w")
    await b.create({"id": "w"})
    assert await inst.wait_for_step_result({"name": "fetch"}) == 1
    with pytest.raises(IntrospectionTimeout) as err:
        await inst.wait_for_step_result({"name": "charge"}, timeout=0.2)
    assert "'charge'" in str(err.value) and "waiting" in str(err.value)


async def test_mock_step_result_skips_the_callback(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "m")
    await inst.modify(
        lambda m: (
            m.disable_sleeps(),
            m.mock_step_result({"name": "charge"}, 99),
            m.mock_event({"type": "approved", "payload": 1}),
        )
    )
    await b.create({"id": "m"})
    await inst.wait_for_status("complete")
    assert (await inst.get_output())["paid"] == 99
    st = h.engine.lookup("dynamic-workflow", '{"tenantId":"probe"}', "m")
    assert st.steps["do:charge#1"].executions == 0  # mocked: never ran


async def test_mock_step_error_times_then_disable_retry_delays(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "e")

    async def setup(m: Any) -> None:
        m.disable_sleeps()
        m.disable_retry_delays()
        m.mock_step_error({"name": "charge"}, RuntimeError("card declined"), times=2)
        m.mock_event({"type": "approved", "payload": 1})

    await inst.modify(setup)
    await b.create({"id": "e"})
    await inst.wait_for_status("complete")
    st = h.engine.lookup("dynamic-workflow", '{"tenantId":"probe"}', "e")
    attempts = st.steps["do:charge#1"].attempts
    assert [a.ok for a in attempts] == [False, False, True]
    assert attempts[0].error == {"name": "RuntimeError", "message": "card declined"}


async def test_mock_step_error_forever_errors_instance(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "x")
    await inst.modify(
        lambda m: (
            m.disable_sleeps(),
            m.disable_retry_delays(),
            m.mock_step_error({"name": "charge"}, {"name": "Nope", "message": "no"}),
        )
    )
    await b.create({"id": "x"})
    await inst.wait_for_status("errored")
    assert await inst.get_error() == {"name": "Nope", "message": "no"}
    with pytest.raises(Exception) as err:
        await inst.wait_for_step_result({"name": "charge"})
    assert type(err.value).__name__ == "Nope"


async def test_force_step_timeout(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "t")
    await inst.modify(
        lambda m: (
            m.disable_sleeps(),
            m.disable_retry_delays(),
            m.force_step_timeout({"name": "charge"}, times=1),
            m.mock_event({"type": "approved", "payload": 1}),
        )
    )
    await b.create({"id": "t"})
    await inst.wait_for_status("complete")
    st = h.engine.lookup("dynamic-workflow", '{"tenantId":"probe"}', "t")
    assert st.steps["do:charge#1"].attempts[0].error == {
        "name": "WorkflowTimeoutError",
        "message": "Execution timed out after 60000ms",
    }


async def test_force_event_timeout(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "f")
    await inst.modify(lambda m: (m.disable_sleeps(), m.force_event_timeout({"name": "approval"})))
    await b.create({"id": "f"})
    await inst.wait_for_status("errored")
    assert (await inst.get_error())["name"] == "WorkflowTimeoutError"


async def test_introspect_workflow_applies_to_every_new_instance(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    wf = await introspect_workflow(b)
    await wf.modify(
        lambda m: (
            m.disable_sleeps(),
            m.mock_event({"type": "approved", "payload": 1}),
            m.mock_event({"type": "approved", "payload": 2}),
        )
    )
    await b.create({"id": "a"})
    await b.create({"id": "b"})
    instances = wf.get_instances()
    assert sorted(i.id for i in instances) == ["a", "b"]
    for i in instances:
        await i.wait_for_status("complete")


@pytest.mark.parametrize("when", ["before", "after", "during"])
async def test_crash_at_recovers_with_same_output(h: ProjectHarness, when: str) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "c")
    await inst.modify(
        lambda m: (
            m.disable_sleeps(),
            m.disable_retry_delays(),
            m.mock_event({"type": "approved", "payload": 1}),
            m.crash_at({"name": "charge"}, when),
        )
    )
    await b.create({"id": "c"})
    await inst.wait_for_status("complete")
    assert h.engine.crashes == 1
    out = await inst.get_output()
    assert (out["first"], out["paid"]) == (1, 11)
    st = h.engine.lookup("dynamic-workflow", '{"tenantId":"probe"}', "c")
    assert st.steps["do:charge#1"].executions == (1 if when == "after" else 2)
    assert st.steps["do:fetch#1"].executions == 1


async def test_evict_at_reloads_code_and_replays(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "v")
    await inst.modify(
        lambda m: (
            m.disable_sleeps(),
            m.mock_event({"type": "approved", "payload": 1}),
            m.evict_at({"name": "fetch"}),
        )
    )
    await b.create({"id": "v"})
    await inst.wait_for_status("complete")
    assert h.project.loaders["LOADER"].loads == 2
    st = h.engine.lookup("dynamic-workflow", '{"tenantId":"probe"}', "v")
    assert st.steps["do:fetch#1"].executions == 1 and st.steps["do:fetch#1"].replays >= 1


async def test_hibernate_every_step_exposes_state_outside_steps(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    plain = await introspect_workflow_instance(b, "p1")
    await plain.modify(
        lambda m: (m.disable_sleeps(), m.mock_event({"type": "approved", "payload": 1}))
    )
    await b.create({"id": "p1"})
    await plain.wait_for_status("complete")
    hib = await introspect_workflow_instance(b, "p2")
    await hib.modify(
        lambda m: (
            m.disable_sleeps(),
            m.mock_event({"type": "approved", "payload": 1}),
            m.hibernate_every_step(),
        )
    )
    plain_passes = (await plain.get_output())["passes"]  # the module-level counter starts at 0
    await b.create({"id": "p2"})
    await hib.wait_for_status("complete")
    hib_passes = (await hib.get_output())["passes"] - plain_passes
    # the counter kept outside steps grows with every pass: one more pass per step here
    assert hib_passes > plain_passes


async def test_divergences_lists_each_skipped_step_once(h: ProjectHarness) -> None:
    shutil.copytree(
        FIXTURE.parent / "project_run" / "tenants" / "dice", h.project.root / "tenants" / "dice"
    )
    b = h.tenant("dice")  # names its 3 steps anew on every pass; 3 sleeps make 4 passes
    inst = await introspect_workflow_instance(b, "d")
    await inst.modify(lambda m: m.disable_sleeps())
    await b.create({"id": "d"})
    await inst.wait_for_status("complete")
    assert len(inst.divergences) == 3 and all("replay diverged" in d for d in inst.divergences)
    assert "do:roll" in inst.divergences[0] and "'d'" in inst.divergences[0]
    probe = await introspect_workflow_instance(h.tenant("probe"), "ok")
    await probe.modify(
        lambda m: (m.disable_sleeps(), m.mock_event({"type": "approved", "payload": 1}))
    )
    await h.tenant("probe").create({"id": "ok"})
    await probe.wait_for_status("complete")
    assert probe.divergences == []  # deterministic code, though it hibernated twice


LOOP = """
from workers import WorkflowEntrypoint


class TenantWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do(config={"retries": {"limit": 1, "delay": "1 hour"}})
        async def item(ctx):
            return ctx["step"]["count"] * 10

        got = [await item(), await item(), await item()]
        await step.sleep("nap", "1 hour")
        await step.sleep("nap", "1 hour")
        return got
"""


@pytest.fixture
def loop(h: ProjectHarness) -> Any:
    (h.project.root / "tenants" / "loop").mkdir()
    (h.project.root / "tenants" / "loop" / "worker.py").write_text(LOOP)
    return h.tenant("loop")


async def test_selector_index_picks_one_call_of_a_repeated_step(loop: Any) -> None:
    inst = await introspect_workflow_instance(loop, "ix")
    await inst.modify(
        lambda m: (
            m.disable_sleeps(),
            m.mock_step_result({"name": "item", "index": 2}, "two"),
        )
    )
    await loop.create({"id": "ix"})
    assert await inst.wait_for_step_result({"name": "item", "index": 3}) == 30
    assert await inst.wait_for_step_result({"name": "item", "index": 2}) == "two"
    assert await inst.wait_for_step_result({"name": "item"}) == 10  # index defaults to 1
    await inst.wait_for_status("complete")
    assert await inst.get_output() == [10, "two", 30]


async def _poll(check: Any) -> Any:
    """``check()`` once it is truthy (a hang guard, not a timing assertion)."""
    for _ in range(12000):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.005)
    raise AssertionError("never happened")


async def test_selector_index_on_errors_and_timeouts(h: ProjectHarness, loop: Any) -> None:
    inst = await introspect_workflow_instance(loop, "iy")
    await inst.modify(
        lambda m: (
            m.disable_sleeps(),
            m.disable_retry_delays([{"name": "item", "index": 1}, {"name": "item", "index": 3}]),
            m.force_step_timeout({"name": "item", "index": 1}, times=1),
            m.mock_step_error({"name": "item", "index": 3}, RuntimeError("third"), times=1),
        )
    )
    await loop.create({"id": "iy"})
    await inst.wait_for_status("complete")
    assert await inst.get_output() == [10, 20, 30]
    steps = h.engine.lookup("dynamic-workflow", '{"tenantId":"loop"}', "iy").steps
    assert [a.error["name"] if a.error else None for a in steps["do:item#1"].attempts] == [
        "WorkflowTimeoutError",
        None,
    ]
    assert [a.ok for a in steps["do:item#2"].attempts] == [True]
    assert steps["do:item#3"].attempts[0].error == {"name": "RuntimeError", "message": "third"}


async def test_selector_index_on_retry_delays_and_sleeps(h: ProjectHarness, loop: Any) -> None:
    retry = await introspect_workflow_instance(loop, "iw")
    await retry.modify(
        lambda m: (
            m.disable_retry_delays([{"name": "item", "index": 1}]),
            m.mock_step_error({"name": "item", "index": 2}, RuntimeError("second"), times=1),
        )
    )
    await loop.create({"id": "iw"})
    st = lambda: h.engine.lookup("dynamic-workflow", '{"tenantId":"loop"}', "iw")  # noqa: E731
    # index 2's retry waits its hour: only index 1's delay was disabled
    await _poll(lambda: st().status.value == "waiting" and st().steps["do:item#2"].attempts)
    assert not st().steps["do:item#2"].done and "do:item#3" not in st().steps

    nap = await introspect_workflow_instance(loop, "iz")
    await nap.modify(lambda m: m.disable_sleeps([{"name": "nap", "index": 1}]))
    await loop.create({"id": "iz"})
    st = lambda: h.engine.lookup("dynamic-workflow", '{"tenantId":"loop"}', "iz")  # noqa: E731
    naps = lambda: sorted((s.count, s.done) for s in st().steps.values() if s.kind == "sleep")  # noqa: E731
    await _poll(lambda: len(naps()) == 2 and st().status.value == "waiting")
    assert naps() == [(1, True), (2, False)]


@pytest.mark.parametrize("index", [0, -1, "2", 1.5, True])
async def test_selector_bad_index_is_a_clear_error(loop: Any, index: Any) -> None:
    inst = await introspect_workflow_instance(loop, "bad")
    with pytest.raises(ValidationError, match="counts calls of the step name from 1"):
        await inst.modify(lambda m: m.mock_step_result({"name": "item", "index": index}, 1))
    with pytest.raises(ValidationError, match="counts calls"):
        await inst.wait_for_step_result({"name": "item", "index": index})


async def test_mocking_a_step_twice_or_erroring_a_mocked_step_is_refused(loop: Any) -> None:
    inst = await introspect_workflow_instance(loop, "twice")
    await inst.modify(lambda m: m.mock_step_result({"name": "item"}, 1))
    with pytest.raises(ValidationError, match="already mocked"):
        await inst.modify(lambda m: m.mock_step_result({"name": "item", "index": 1}, 2))
    with pytest.raises(ValidationError, match="after mocking its result"):
        await inst.modify(lambda m: m.mock_step_error({"name": "item"}, RuntimeError("x")))
    with pytest.raises(ValidationError, match="after mocking its result"):
        await inst.modify(lambda m: m.force_step_timeout({"name": "item"}))
    # another index of the same name is another step
    await inst.modify(lambda m: m.mock_step_result({"name": "item", "index": 2}, 2))


async def test_modify_all_gives_each_instance_its_own_counters(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    wf = await introspect_workflow(b)

    async def setup(m: Any) -> None:
        m.disable_sleeps()
        m.disable_retry_delays()
        m.mock_step_error({"name": "charge"}, RuntimeError("declined"), times=1)
        m.mock_event({"type": "approved", "payload": "ok"})

    await wf.modify_all(setup)
    await b.create({"id": "one"})
    await b.create({"id": "two"})
    instances = {i.id: i for i in wf.get()}
    assert sorted(instances) == ["one", "two"]
    for id in ("one", "two"):
        await instances[id].wait_for_status("complete")
        st = h.engine.lookup("dynamic-workflow", '{"tenantId":"probe"}', id)
        # times=1 counts per instance: each instance's first charge attempt failed
        assert [a.ok for a in st.steps["do:charge#1"].attempts] == [False, True]


async def test_instance_dispose_terminates_and_drops_modifications(h: ProjectHarness) -> None:
    b = h.tenant("probe")
    inst = await introspect_workflow_instance(b, "d1")
    await inst.modify(lambda m: m.mock_step_result({"name": "fetch"}, 5))
    await b.create({"id": "d1"})
    assert await inst.wait_for_step_result({"name": "fetch"}) == 5
    await inst.dispose()
    assert (await (await b.get("d1")).status())["status"] == "terminated"
    await inst.dispose()  # idempotent
    with pytest.raises(ValidationError, match="was disposed"):
        await inst.modify(lambda m: m.disable_sleeps())
    # a later instance of the same id runs as written: the mock is gone
    await (await b.get("d1")).restart()
    again = await introspect_workflow_instance(b, "d1")
    assert await again.wait_for_step_result({"name": "fetch"}) == 1


async def test_async_with_disposes_a_finished_instance_without_changing_it(
    h: ProjectHarness,
) -> None:
    b = h.tenant("probe")
    async with await introspect_workflow_instance(b, "d2") as inst:
        await inst.modify(
            lambda m: (m.disable_sleeps(), m.mock_event({"type": "approved", "payload": 1}))
        )
        await b.create({"id": "d2"})
        await inst.wait_for_status("complete")
    assert (await (await b.get("d2")).status())["status"] == "complete"


async def test_workflow_dispose_stops_its_instances_and_modifying_new_ones(
    h: ProjectHarness,
) -> None:
    b = h.tenant("probe")
    wf = await introspect_workflow(b)
    await wf.modify_all(lambda m: m.mock_step_result({"name": "fetch"}, 7))
    await b.create({"id": "w1"})
    (w1,) = wf.get()
    assert await w1.wait_for_step_result({"name": "fetch"}) == 7
    await wf.dispose()
    assert (await (await b.get("w1")).status())["status"] == "terminated"
    with pytest.raises(ValidationError, match="was disposed"):
        await wf.modify_all(lambda m: m.disable_sleeps())
    await b.create({"id": "w2"})
    w2 = await introspect_workflow_instance(b, "w2")
    assert await w2.wait_for_step_result({"name": "fetch"}) == 1  # not mocked any more
    await wf.dispose()  # idempotent
