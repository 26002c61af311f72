"""``sensitive: "output"``: the value flows on, every view shows ``[REDACTED]``."""

from __future__ import annotations

from typing import Any

import pytest

from dynwf.engine import instance_detail
from dynwf.errors import InvalidStepConfigError
from dynwf.workers import WorkflowEntrypoint
from tests.conftest import Harness


class Secretive(WorkflowEntrypoint):
    async def run(self, event: Any, step: Any) -> Any:
        @step.do("token", config={"sensitive": "output"})
        async def token() -> str:
            return "s3cr3t"

        t = await token()

        @step.do("use")
        async def use() -> str:
            return t + "!"

        return {"used": await use()}


async def test_sensitive_output_flows_on_but_views_redact_it(harness: Harness) -> None:
    harness.add("wf", Secretive)
    inst = await harness.binding("wf").create({"id": "s"})
    await harness.idle()
    # the value reached the next step and run()
    assert (await inst.status())["output"] == {"used": "s3cr3t!"}
    detail = instance_detail(harness.engine.lookup("wf", "", "s"))
    token, use = detail["steps"]
    assert token["output"] == "[REDACTED]"
    assert token["config"]["sensitive"] == "output"
    assert use["output"] == "s3cr3t!" and "sensitive" not in use["config"]
    assert 's3cr3t"' not in str(detail)
    # replay takes the real value from the journal: a restart of the engine changes nothing
    await harness.reopen()
    again = instance_detail(harness.engine.lookup("wf", "", "s"))
    assert again["steps"][0]["output"] == "[REDACTED]"


@pytest.mark.parametrize("bad", ["input", True, "OUTPUT"])
async def test_sensitive_takes_only_output(harness: Harness, bad: Any) -> None:
    class Bad(WorkflowEntrypoint):
        async def run(self, event: Any, step: Any) -> Any:
            @step.do("x", config={"sensitive": bad})
            async def x() -> int:
                return 1

            try:
                await x()
            except InvalidStepConfigError as exc:
                return str(exc)
            return "no error"

    harness.add("wf", Bad)
    inst = await harness.binding("wf").create()
    await harness.idle()
    said = (await inst.status())["output"]
    assert "'sensitive' must be 'output'" in said and repr(bad) in said
