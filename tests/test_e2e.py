"""End to end, as a new user: build the wheel, install it in a fresh venv, init, pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _env() -> dict[str, str]:
    # Nothing of this test run leaks into the user's shell: no venv, no pytest options.
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=_env()
    )
    assert done.returncode == 0, (
        f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_wheel_in_a_fresh_venv_inits_a_project_whose_tests_pass(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT], tmp_path, 600
    )
    (wheel,) = wheels.glob("dynwf-*.whl")

    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    # pip fetches dynwf's dependencies (from its cache when it can).
    _run([bin_dir / "python", "-m", "pip", "install", "-q", wheel], tmp_path, 900)
    # the explorer UI's files are package data: the wheel must carry them
    ui = "from importlib import resources; r = resources.files('dynwf.server') / 'explorer_ui'; "
    ui += "assert all((r / f).is_file() for f in ('index.html', 'instance.js', 'explorer.css'))"
    _run([bin_dir / "python", "-c", ui], tmp_path, 60)

    _run([bin_dir / "dynwf", "init", "proj"], tmp_path, 300)
    project = tmp_path / "proj"
    _run([bin_dir / "dynwf", "validate"], project, 300)
    done = _run([bin_dir / "pytest"], project, 600)

    assert re.search(r"\b11 passed\b", done.stdout), done.stdout[-2000:]
