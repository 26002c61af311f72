"""The codebase's own gates, run as tests: mypy strict and ruff on dynwf/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_mypy_strict_passes_on_dynwf() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "dynwf", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_public_engine_surface_is_pinned() -> None:
    import dynwf.engine

    assert dynwf.engine.__all__ == [
        "Clock",
        "Engine",
        "EntrypointProgram",
        "EventDict",
        "Faults",
        "Instance",
        "InstanceState",
        "ManualClock",
        "Status",
        "Step",
        "StepConfig",
        "StepEvent",
        "StepHost",
        "StepState",
        "SystemClock",
        "TimeControl",
        "Workflow",
        "WorkflowBinding",
        "WorkflowProgram",
        "instance_detail",
        "instance_list_item",
        "iso_ms",
        "parse_duration",
        "resolve_step_config",
    ]
    for name in dynwf.engine.__all__:
        assert getattr(dynwf.engine, name) is not None
