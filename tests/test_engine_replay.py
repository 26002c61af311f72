"""Hibernation and replay: run() from the top, journaled results, frozen config, divergence."""

from __future__ import annotations

import contextlib
from typing import Any

from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


async def test_every_sleep_drops_run_and_replays_journaled_steps(harness: Harness) -> None:
    runs = {"outside": 0, "a": 0, "b": 0}

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            runs["outside"] += 1

            @step.do()
            async def a() -> int:
                runs["a"] += 1
                return 1

            first = await a()
            await step.sleep("nap", "1 hour")

            @step.do()
            async def b() -> int:
                runs["b"] += 1
                return 2

            return first + await b()

    harness.add("wf", WF)
    inst = await harness.binding("wf").create({"id": "h"})
    await harness.idle()
    assert (await inst.status())["status"] == "waiting"
    await harness.advance("59 minutes")
    assert runs == {"outside": 1, "a": 1, "b": 0}
    await harness.advance("1 minute")
    assert (await inst.status())["output"] == 3
    assert runs == {"outside": 2, "a": 1, "b": 1}
    st = harness.engine.lookup("wf", "", "h")
    assert st.steps["do:a#1"].replays == 1 and st.steps["do:a#1"].executions == 1


async def test_state_on_self_does_not_survive_hibernation(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            self.seen = getattr(self, "seen", 0) + 1
            await step.sleep("nap", 10)
            return self.seen

    harness.add("wf", WF)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await harness.advance(10)
    assert (await inst.status())["output"] == 1


async def test_journaled_error_replays_without_running(harness: Harness) -> None:
    runs: list[str] = []

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("bad", config={"retries": {"limit": 0, "delay": 0}})
            async def bad() -> None:
                runs.append("bad")
                raise LookupError("gone")

            try:
                await bad()
            except LookupError as exc:
                caught = type(exc).__name__ + ":" + str(exc)
            await step.sleep("nap", 5)
            return caught

    harness.add("wf", WF)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await harness.advance(5)
    assert (await inst.status())["output"] == "LookupError:gone"
    assert runs == ["bad"]


async def test_custom_exception_replays_with_same_name(harness: Harness) -> None:
    class PaymentDeclined(Exception):
        pass

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("pay", config={"retries": {"limit": 0, "delay": 0}})
            async def pay() -> None:
                raise PaymentDeclined("insufficient funds")

            with contextlib.suppress(Exception):
                await pay()
            await step.sleep("nap", 5)
            await pay()  # a second call is a new step: pay#2

    harness.add("wf", WF)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await harness.advance(5)
    status = await inst.status()
    assert status["error"] == {"name": "PaymentDeclined", "message": "insufficient funds"}


async def test_first_config_is_frozen_for_retries(harness: Harness) -> None:
    runs: list[int] = []
    configs = [{"retries": {"limit": 1, "delay": 1000}}, {"retries": {"limit": 0, "delay": 1}}]

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            cfg = configs[min(len(runs), 1)]  # the config changes after the first attempt

            @step.do("s", config=cfg)
            async def s(ctx: Any) -> Any:
                runs.append(ctx["attempt"])
                if ctx["attempt"] == 1:
                    raise RuntimeError("first")
                return ctx["config"]["retries"]["limit"]

            return await s()

    harness.add("wf", WF)
    inst = await harness.binding("wf").create()
    await harness.idle()
    await harness.advance(1000)
    assert runs == [1, 2]
    assert (await inst.status())["output"] == 1


async def test_divergence_warning_names_missing_and_new_steps(harness: Harness) -> None:
    passes = {"n": 0}

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            passes["n"] += 1
            name = "first-pass" if passes["n"] == 1 else "other-pass"

            @step.do(name)
            async def s() -> str:
                return name

            await s()
            await step.sleep("nap", 5)
            return "done"

    warnings: list[str] = []
    harness.engine.listeners.append(
        lambda kind, p: warnings.append(p) if kind == "warning" else None
    )
    harness.add("wf", WF)
    inst = await harness.binding("wf").create({"id": "div"})
    await harness.idle()
    await harness.advance(5)
    st = harness.engine.lookup("wf", "", "div")
    assert len(st.warnings) == 1
    w = st.warnings[0]
    assert w.missing == ["do:first-pass#1"] and w.ran == ["do:other-pass#1"]
    assert "'div'" in w.message and "do:first-pass#1" in w.message
    assert warnings == [w.message]
    assert (await inst.status())["output"] == "done"


async def test_divergence_names_each_skipped_step_once(harness: Harness) -> None:
    passes = {"n": 0}

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            passes["n"] += 1
            for i in range(3):  # a step name that changes on every pass, as a random one does

                @step.do(f"roll {i} of pass {passes['n']}")
                async def roll() -> int:
                    return 1

                await roll()
                await step.sleep(f"rest {i}", 5)
            return "done"

    events: list[str] = []
    harness.engine.listeners.append(lambda kind, p: events.append(p) if kind == "warning" else None)
    harness.add("wf", WF)
    inst = await harness.binding("wf").create({"id": "dice"})
    await harness.idle()
    for _ in range(3):
        await harness.advance(5)
    assert (await inst.status())["output"] == "done"
    st = harness.engine.lookup("wf", "", "dice")
    # passes 2-4 each skip what the pass before ran, and nothing is named twice
    assert [w.missing for w in st.warnings] == [
        ["do:roll 0 of pass 1#1"],
        ["do:roll 0 of pass 2#1", "do:roll 1 of pass 2#1"],
        ["do:roll 0 of pass 3#1", "do:roll 1 of pass 3#1", "do:roll 2 of pass 3#1"],
    ]
    assert st.warnings[2].ran == [f"do:roll {i} of pass 4#1" for i in range(3)]
    assert events == [w.message for w in st.warnings]
    assert "do:roll 0 of pass 1#1" not in st.warnings[1].message


async def test_restart_of_engine_replays_and_counts_cut_attempt_as_failed(
    make_harness: Any,
) -> None:
    import asyncio

    gate = asyncio.Event()
    runs: list[int] = []

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("long", config={"retries": {"limit": 2, "delay": 0}})
            async def long(ctx: Any) -> int:
                runs.append(ctx["attempt"])
                if ctx["attempt"] == 1:
                    gate.set()
                    await asyncio.sleep(60)
                return ctx["attempt"]

            return await long()

    h = make_harness()
    await h.engine.start()
    h.add("wf", WF)
    await h.binding("wf").create({"id": "cut"})
    await gate.wait()
    await h.engine.stop(grace=0.05)  # cuts the attempt off mid-callback
    await h.reopen()
    try:
        await h.idle()
        st = h.engine.lookup("wf", "", "cut")
        attempts = st.steps["do:long#1"].attempts
        assert [a.ok for a in attempts] == [False, True]
        assert attempts[0].error == {
            "name": "WorkflowInternalError",
            "message": "Attempt failed due to internal workflows error",
        }
        assert st.output == 2 and runs == [1, 2]
    finally:
        await h.engine.stop()
