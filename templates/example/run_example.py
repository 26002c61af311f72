"""Run the example order workflow on a durable engine, crash-free, and print its timeline.

    python templates/example/run_example.py [JOURNAL]

Sleeps and retry delays are skipped so a one-day workflow finishes in a moment;
the journal (default .dynwf/example.duckdb) keeps every step.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

from dynwf.engine import Engine, EntrypointProgram, TimeControl, Workflow
from dynwf.workers import install


def load_workflow_class() -> type:
    install()  # `from workers import ...` resolves to dynwf
    path = Path(__file__).with_name("order_workflow.py")
    spec = importlib.util.spec_from_file_location("order_workflow", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.OrderWorkflow  # type: ignore[no-any-return]


async def main(journal: Path) -> int:
    engine = Engine(journal, time=TimeControl(skip_sleeps=True, skip_retry_delays=True))
    engine.register(Workflow("orders", "ORDERS", EntrypointProgram(load_workflow_class())))
    async with engine:
        orders = engine.binding("ORDERS")
        instance = await orders.create({"params": {"sku": "tea-42", "qty": 3}})
        await engine.wait_until_idle()
        print(
            f"instance {instance.id}: {(await instance.status())['status']} (waiting for approval)"
        )
        await instance.send_event({"type": "approved", "payload": {"by": "maria"}})
        await engine.wait_until_idle()
        status = await instance.status()
        st = engine.lookup("orders", "", instance.id)
        print(f"{'step':<40} {'ran':>4} {'replayed':>8}  result")
        for s in st.steps.values():
            result = s.output if s.error is None else s.error
            print(f"{s.key:<40} {s.executions:>4} {s.replays:>8}  {result}")
        print(f"status: {status['status']}  output: {status['output']}")
        print(f"journal: {journal}")
        return 0 if status["status"] == "complete" else 1


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".dynwf/example.duckdb")
    sys.exit(asyncio.run(main(target)))
