"""Every command's --help, through the real entry point: exit 0, examples, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMANDS = [
    ["init"],
    ["validate"],
    ["build"],
    ["dev"],
    ["run"],
    ["inspect"],
    ["instances"],
    ["instances", "pause"],
    ["instances", "resume"],
    ["instances", "terminate"],
    ["instances", "restart"],
    ["instances", "send-event"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_examples_and_exit_codes(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dynwf", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "Examples" in text
    assert "Exit status: 0" in text
    assert "dynwf " + command[0] in text


def test_no_command_shows_every_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dynwf"], capture_output=True, text=True, timeout=600
    )
    out = done.stdout + done.stderr
    for name in ("init", "validate", "build", "dev", "run", "inspect", "instances"):
        assert name in out
