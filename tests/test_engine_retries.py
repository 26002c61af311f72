"""Retries, backoff, timeouts, NonRetryableError, durations and step config."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynwf.engine import TimeControl, parse_duration, resolve_step_config
from dynwf.errors import InvalidDurationError, InvalidStepConfigError
from dynwf.workers import WorkflowEntrypoint
from dynwf.workers.workflows import NonRetryableError
from tests.conftest import Harness


def flaky(fail_times: int, config: dict[str, Any], runs: list[int]) -> type[Any]:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("flaky", config=config)
            async def f(ctx: Any) -> int:
                runs.append(ctx["attempt"])
                if ctx["attempt"] <= fail_times:
                    raise ValueError(f"boom {ctx['attempt']}")
                return ctx["attempt"]

            return await f()

    return WF


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("constant", [1000, 1000, 1000]),
        ("linear", [1000, 2000, 3000]),
        ("exponential", [1000, 2000, 4000]),
    ],
)
async def test_retry_delays_follow_backoff(
    harness: Harness, backoff: str, delays: list[int]
) -> None:
    runs: list[int] = []
    cfg = {"retries": {"limit": 3, "delay": "1 second", "backoff": backoff}}
    harness.add("wf", flaky(3, cfg, runs))
    inst = await harness.binding("wf").create({"id": "r"})
    await harness.idle()
    for i, d in enumerate(delays):
        assert runs == list(range(1, i + 2))
        st = harness.engine.lookup("wf", "", "r")
        wake = st.steps["do:flaky#1"].wake_at
        assert wake is not None and wake - st.steps["do:flaky#1"].attempts[-1].end == d
        assert (await inst.status())["status"] == "waiting"
        await harness.advance(d - 1)
        assert len(runs) == i + 1, "retried before its delay"
        await harness.advance(1)
    assert runs == [1, 2, 3, 4]
    assert (await inst.status())["output"] == 4


async def test_retries_exhausted_errors_with_last_error(harness: Harness) -> None:
    runs: list[int] = []
    harness.add("wf", flaky(99, {"retries": {"limit": 2, "delay": 0}}, runs))
    inst = await harness.binding("wf").create()
    await harness.idle()
    status = await inst.status()
    assert runs == [1, 2, 3]  # limit counts retries: limit + 1 attempts
    assert status["status"] == "errored"
    assert status["error"] == {"name": "ValueError", "message": "boom 3"}


async def test_default_retry_policy_is_five_retries_ten_seconds_exponential(
    harness: Harness,
) -> None:
    runs: list[int] = []
    harness.add("wf", flaky(99, {}, runs))
    inst = await harness.binding("wf").create({"id": "d"})
    await harness.idle()
    for d in [10_000, 20_000, 40_000, 80_000, 160_000]:
        await harness.advance(d)
    assert runs == [1, 2, 3, 4, 5, 6]
    assert (await inst.status())["status"] == "errored"


async def test_nonretryable_error_stops_retries(harness: Harness) -> None:
    runs: list[int] = []

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("charge", config={"retries": {"limit": 5, "delay": 0}})
            async def charge() -> None:
                runs.append(1)
                raise NonRetryableError("card declined")

            await charge()

    harness.add("wf", WF)
    inst = await harness.binding("wf").create()
    await harness.idle()
    assert runs == [1]
    assert (await inst.status())["error"] == {
        "name": "NonRetryableError",
        "message": "card declined",
    }


async def test_step_timeout_fails_attempt_and_retries(harness: Harness) -> None:
    runs: list[int] = []

    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("slow", config={"timeout": 50, "retries": {"limit": 1, "delay": 0}})
            async def slow(ctx: Any) -> str:
                runs.append(ctx["attempt"])
                if ctx["attempt"] == 1:
                    await asyncio.sleep(5)
                return "fast enough"

            return await slow()

    harness.add("wf", WF)
    inst = await harness.binding("wf").create({"id": "t"})
    await harness.idle()
    assert (await inst.status())["output"] == "fast enough"
    first = harness.engine.lookup("wf", "", "t").steps["do:slow#1"].attempts[0]
    assert first.error == {
        "name": "WorkflowTimeoutError",
        "message": "Execution timed out after 50ms",
    }


async def test_run_catches_step_error_and_goes_on(harness: Harness) -> None:
    class WF(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("fails", config={"retries": {"limit": 0, "delay": 0}})
            async def fails() -> None:
                raise KeyError("missing")

            try:
                await fails()
            except KeyError as exc:
                caught = f"caught {exc}"

            @step.do()
            async def after() -> str:
                return caught

            return await after()

    harness.add("wf", WF)
    inst = await harness.binding("wf").create()
    await harness.idle()
    assert (await inst.status())["output"] == "caught 'missing'"


async def test_skip_retry_delays_per_step(make_harness: Any) -> None:
    h = make_harness(time=TimeControl(skip_retry_delays=frozenset({"flaky"})))
    await h.engine.start()
    try:
        runs: list[int] = []
        h.add("wf", flaky(2, {"retries": {"limit": 3, "delay": "1 hour"}}, runs))
        inst = await h.binding("wf").create()
        await h.idle()
        assert runs == [1, 2, 3]
        assert (await inst.status())["output"] == 3
    finally:
        await h.engine.stop()


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        (250, 250),
        ("1 second", 1000),
        ("2 seconds", 2000),
        ("10 minutes", 600_000),
        ("1 hour", 3_600_000),
        ("1 day", 86_400_000),
        ("2 weeks", 14 * 86_400_000),
        ("1 month", 30 * 86_400_000),
        ("1 year", int(365.25 * 86_400_000)),
        ("1.5 seconds", 1500),
    ],
)
def test_parse_duration_units(text: Any, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["10 fortnights", "soon", "5", "-1 second", -5, True, None, [1]])
def test_parse_duration_rejects_and_quotes_value(bad: Any) -> None:
    with pytest.raises(InvalidDurationError) as err:
        parse_duration(bad)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"retries": {"limit": -1}}, "retries.limit"),
        ({"retries": {"backoff": "random"}}, "backoff"),
        ({"timeout": 0}, "timeout"),
        ({"retry": {}}, "unknown config key"),
        ({"retries": {"limit": 1, "delays": 1}}, "unknown retries key"),
    ],
)
def test_step_config_validation(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidStepConfigError) as err:
        resolve_step_config(config, step="pay")
    assert fragment in str(err.value) and "'pay'" in str(err.value)


def test_step_config_defaults() -> None:
    cfg = resolve_step_config(None, step="x")
    assert cfg.as_dict() == {
        "retries": {"limit": 5, "delay": 10000, "backoff": "exponential"},
        "timeout": "10 minutes",
    }
    assert cfg.timeout_ms == 600_000
