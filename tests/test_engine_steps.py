"""step.do: decorator forms, dependencies, ctx, concurrency, JSON rule, names, limits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynwf.engine import Engine, EntrypointProgram, ManualClock, Workflow
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


async def run_one(h: Harness, cls: type[Any], params: Any = None, **opts: Any) -> dict[str, Any]:
    h.add("wf", cls, **opts)
    inst = await h.binding("wf").create({"id": "i1", "params": params})
    await h.idle()
    return await inst.status()


async def test_step_do_decorator_runs_only_when_called(harness: Harness) -> None:
    ran: list[str] = []

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("declared only")
            async def never() -> None:
                ran.append("never")

            @step.do("called")
            async def called() -> str:
                ran.append("called")
                return "ok"

            return await called()

    status = await run_one(harness, WF)
    assert status == {"status": "complete", "output": "ok", "error": None}
    assert ran == ["called"]


async def test_step_do_name_defaults_to_function_name_and_counts_repeats(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do()
            async def fetch(ctx: Any) -> Any:
                return [ctx["step"]["name"], ctx["step"]["count"], ctx["attempt"]]

            return [await fetch(), await fetch()]

    status = await run_one(harness, WF)
    assert status["output"] == [["fetch", 1, 1], ["fetch", 2, 1]]
    st = harness.engine.lookup("wf", "", "i1")
    assert sorted(st.steps) == ["do:fetch#1", "do:fetch#2"]


async def test_step_do_bare_decorator_and_sync_callback(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do
            def plain() -> int:
                return 7

            return await plain()

    assert (await run_one(harness, WF))["output"] == 7


async def test_step_do_implicit_dependency_by_step_name_runs_once(harness: Harness) -> None:
    runs: dict[str, int] = {}

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("base")
            async def base_fn() -> int:
                runs["base"] = runs.get("base", 0) + 1
                return 10

            @step.do()
            async def left(base: int) -> int:
                return base + 1

            @step.do()
            async def right(base: int, ctx: Any) -> int:
                return base + ctx["attempt"]

            @step.do(concurrent=True)
            async def both(left: int, right: int) -> int:
                return left * right

            return await both()

    status = await run_one(harness, WF)
    assert status["output"] == 11 * 11
    assert runs == {"base": 1}


async def test_step_do_unknown_parameter_is_type_error(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do()
            async def lonely(nothing_declared: int) -> int:
                return 1

            return await lonely()

    status = await run_one(harness, WF)
    assert status["status"] == "errored"
    assert status["error"]["name"] == "TypeError"
    assert "nothing_declared" in status["error"]["message"]


async def test_step_do_legacy_depends_form_before_2026_02_25(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("one")
            async def one() -> int:
                return 1

            @step.do("two", depends=[one], concurrent=False)
            async def two(value: int, ctx: Any) -> list[Any]:
                return [value, ctx["step"]["name"]]

            return await two()

    status = await run_one(harness, WF, compatibility_date="2025-06-01")
    assert status["output"] == [1, "two"]


async def test_step_do_depends_rejected_on_new_compatibility_date(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("one")
            async def one() -> int:
                return 1

            @step.do("two", depends=[one])
            async def two(value: int) -> int:
                return value

            return await two()

    status = await run_one(harness, WF, compatibility_date="2026-04-01")
    assert status["status"] == "errored"
    assert "depends" in status["error"]["message"]


async def test_step_do_concurrent_steps_with_gather(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do()
            async def a() -> str:
                await asyncio.sleep(0.01)
                return "a"

            @step.do()
            async def b() -> str:
                return "b"

            return list(await asyncio.gather(a(), b()))

    assert (await run_one(harness, WF))["output"] == ["a", "b"]


async def test_step_result_tuple_becomes_list(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do()
            async def pair() -> Any:
                return (1, (2, 3))

            return await pair()

    assert (await run_one(harness, WF))["output"] == [1, [2, 3]]


async def test_step_result_not_json_fails_without_retry(harness: Harness) -> None:
    runs: list[int] = []

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("make set")
            async def make() -> Any:
                runs.append(1)
                return {1, 2}

            return await make()

    status = await run_one(harness, WF)
    assert status["status"] == "errored"
    assert status["error"]["name"] == "TypeError"
    assert "'make set'" in status["error"]["message"] and "set" in status["error"]["message"]
    assert runs == [1]


async def test_step_result_over_one_mib_fails(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do()
            async def big() -> str:
                return "x" * (1024 * 1024)

            return await big()

    status = await run_one(harness, WF)
    assert status["status"] == "errored"
    assert "1 MiB" in status["error"]["message"]


@pytest.mark.parametrize("bad", ["", "x" * 257, "tab\there"])
async def test_step_name_rules(harness: Harness, bad: str) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do(bad)
            async def s() -> int:
                return 1

            return await s()

    status = await run_one(harness, WF)
    assert status["status"] == "errored"
    assert "step name" in status["error"]["message"]


async def test_step_limit_counts_do_calls_only(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            for i in range(3):

                @step.do(f"s{i}")
                async def s() -> int:
                    return 1

                await s()
            await step.sleep("free", 0)
            return "done"

    status = await run_one(harness, WF, step_limit=3)
    assert status["output"] == "done"

    class TooMany(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            for i in range(4):

                @step.do(f"s{i}")
                async def s() -> int:
                    return 1

                await s()

    harness.add("many", TooMany, step_limit=3)
    inst = await harness.binding("many").create()
    await harness.idle()
    status = await inst.status()
    assert status["status"] == "errored"
    assert "limit of 3" in status["error"]["message"]


async def test_event_has_payload_timestamp_and_ids(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return {
                "payload": event.payload,
                "same": event["payload"] == event.payload,
                "id": event.instanceId,
                "wf": event.workflowName,
                "ts": event.timestamp.year,
            }

    status = await run_one(harness, WF, params={"a": 1})
    assert status["output"] == {
        "payload": {"a": 1},
        "same": True,
        "id": "i1",
        "wf": "wf",
        "ts": 2027,
    }


async def test_step_bad_config_errors_instance_with_message(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("bad", config={"retries": {"limit": 1, "delay": "3 fortnights"}})
            async def bad() -> int:
                return 1

            return await bad()

    status = await run_one(harness, WF)
    assert status["status"] == "errored"
    assert "'3 fortnights'" in status["error"]["message"]


async def test_engine_in_memory_journal_runs(tmp_path: Any) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            return "mem"

    eng = Engine(None, clock=ManualClock())
    eng.register(Workflow("wf", "WF", EntrypointProgram(WF)))
    async with eng:
        inst = await eng.binding("WF").create()
        await eng.wait_until_idle()
        assert (await inst.status())["output"] == "mem"
