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
        "DEFAULT_COMPATIBILITY_DATE",
        "FINISHED",
        "Clock",
        "DoBegin",
        "Engine",
        "EntrypointProgram",
        "EventDict",
        "Faults",
        "Instance",
        "InstanceState",
        "ManualClock",
        "Modifiers",
        "Outcome",
        "PassInterrupted",
        "PassParked",
        "Status",
        "StatusChange",
        "Step",
        "StepConfig",
        "StepEvent",
        "StepHost",
        "StepRef",
        "StepState",
        "SystemClock",
        "TimeControl",
        "Workflow",
        "WorkflowBinding",
        "WorkflowProgram",
        "check_id_batch",
        "error_from_dict",
        "error_to_dict",
        "fold",
        "instance_detail",
        "instance_list_item",
        "iso_ms",
        "parse_duration",
        "resolve_step_config",
    ]
    for name in dynwf.engine.__all__:
        assert getattr(dynwf.engine, name) is not None


def test_an_isolate_does_not_load_the_engine_or_duckdb() -> None:
    # Isolate boot time and memory depend on it (bench/dispatch.py): package
    # namespaces import their names lazily, so the tenant side stays light.
    code = (
        "import sys, dynwf.dispatch._isolate_main; "
        "heavy = [m for m in ('duckdb', 'dynwf.journal', 'dynwf.engine._engine') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_lazy_namespaces_resolve_every_public_name() -> None:
    import dynwf.dispatch

    for name in dynwf.dispatch.__all__:
        assert getattr(dynwf.dispatch, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = dynwf.dispatch.Nope  # type: ignore[attr-defined]
