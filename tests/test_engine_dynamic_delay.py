"""A callable ``retries.delay``: called once per failed attempt that will be retried, its
answer is the base of that retry's backoff; one that raises, takes over 5 s or answers
something that is not a duration fails the step without retry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dynwf.engine import instance_detail
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness

ASKED: list[tuple[str, int, int, str]] = []


def make(delay: Any, fails: int = 2, limit: int = 3) -> type[WorkflowEntrypoint]:
    class Flaky(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            config = {"retries": {"limit": limit, "delay": delay, "backoff": "exponential"}}

            @step.do("flaky", config=config)
            async def flaky(ctx: Any) -> int:
                if ctx["attempt"] <= fails:
                    raise ValueError(f"no luck {ctx['attempt']}")
                return ctx["attempt"]

            try:
                return await flaky()
            except Exception as exc:
                return {"caught": {"name": type(exc).__name__, "message": str(exc)}}

    return Flaky


def remembering(answer: Any) -> Any:
    def delay(arg: Any) -> Any:
        ctx = arg["ctx"]
        ASKED.append((ctx["step"]["name"], ctx["step"]["count"], ctx["attempt"], str(arg["error"])))
        return answer

    return delay


def step_of(h: Harness, id: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = instance_detail(h.engine.lookup("wf", "", id))["steps"]
    return steps[0]


async def test_the_callables_answer_feeds_the_backoff(harness: Harness) -> None:
    ASKED.clear()
    harness.add("wf", make(remembering("2 seconds")))
    inst = await harness.binding("wf").create({"id": "d"})
    await harness.idle()
    assert ASKED == [("flaky", 1, 1, "no luck 1")]
    assert step_of(harness, "d")["config"]["retries"]["delay"] == "[dynamic]"
    await harness.advance(1_999)
    assert len(step_of(harness, "d")["attempts"]) == 1  # base 2 s, attempt 1: 2 s
    await harness.advance(1)
    assert ASKED[-1] == ("flaky", 1, 2, "no luck 2")
    await harness.advance(3_999)
    assert len(step_of(harness, "d")["attempts"]) == 2  # attempt 2: 2 s * 2
    await harness.advance(1)
    assert (await inst.status())["output"] == 3
    assert len(ASKED) == 2  # never for the attempt that succeeded


async def test_an_async_callable_and_ms_answers_work(harness: Harness) -> None:
    async def delay(arg: Any) -> int:
        await asyncio.sleep(0)
        return 500

    harness.add("wf", make(delay, fails=1))
    inst = await harness.binding("wf").create({"id": "d"})
    await harness.idle()
    await harness.advance(500)
    assert (await inst.status())["output"] == 2


async def test_not_called_when_no_retry_follows(harness: Harness) -> None:
    ASKED.clear()
    harness.add("wf", make(remembering(10), fails=5, limit=1))
    inst = await harness.binding("wf").create({"id": "d"})
    await harness.idle()
    await harness.advance(10)
    out = (await inst.status())["output"]
    assert out["caught"]["message"] == "no luck 2"
    assert [a[2] for a in ASKED] == [1]  # attempt 2 was the last: nothing to ask


def boom(arg: Any) -> Any:
    raise RuntimeError("boom")


async def never(arg: Any) -> Any:
    await asyncio.sleep(60)


@pytest.mark.parametrize(
    ("delay", "reason"),
    [
        (boom, "threw an error: boom"),
        (lambda arg: "soon", "returned an invalid delay value"),
        (lambda arg: -5, "returned an invalid delay value"),
        (lambda arg: None, "returned an invalid delay value"),
        (never, "did not return within 5 seconds"),
    ],
)
async def test_a_failing_callable_fails_the_step_without_retry(
    harness: Harness, delay: Any, reason: str
) -> None:
    harness.add("wf", make(delay))
    inst = await harness.binding("wf").create({"id": "d"})
    await harness.idle()
    out = (await inst.status())["output"]
    assert out["caught"]["name"] == "NonRetryableDelayError"
    assert out["caught"]["message"].startswith(f'The delay function for step "flaky-1" {reason}')
    step = step_of(harness, "d")
    assert len(step["attempts"]) == 1 and step["success"] is False
