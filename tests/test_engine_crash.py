"""Durability under real SIGKILLs: a child engine is killed at many points and recovers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dynwf.engine import fold
from dynwf.journal import Journal

CHILD = Path(__file__).parent / "fixtures" / "crash_child.py"
STEPS = ["fetch", "parse", "enrich", "charge", "notify", "archive"]
pytestmark = pytest.mark.slow


def child(journal: Path, log: Path, *crash: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run(
        [sys.executable, str(CHILD), str(journal), str(log), *crash],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def ran(log: Path) -> Counter[str]:
    return (
        Counter(line.split()[0] for line in log.read_text().splitlines())
        if log.exists()
        else Counter()
    )


def journal_state(path: Path) -> Any:
    j = Journal(path, read_only=True)
    try:
        ((uid, rows),) = j.facts([r.uid for r in j.instances()]).items()
        return fold(uid, rows)
    finally:
        j.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("ref")
    done = child(d / "j.duckdb", d / "log")
    assert done.returncode == 0, done.stderr
    assert ran(d / "log") == Counter(STEPS)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("when", ["before", "after", "during"])
@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_step_recovers_with_same_output(
    tmp_path: Path, reference: dict[str, Any], step: str, when: str
) -> None:
    journal, log = tmp_path / "j.duckdb", tmp_path / "log"
    crashed = child(journal, log, f"{step}:{when}")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    done = child(journal, log)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == reference
    counts = ran(log)
    expected = Counter(STEPS)
    if when in ("before", "during"):  # ran, result not journaled: ran once more
        expected[step] += 1
    assert counts == expected
    st = journal_state(journal)
    attempts = st.steps[f"do:{step}#1"].attempts
    if when == "during":  # the cut attempt counts as failed, with the internal error
        assert attempts[0].error["name"] == "WorkflowInternalError"
        assert [a.ok for a in attempts] == [False, True]


@pytest.mark.parametrize("step", ["fetch", "charge"])
def test_sigkill_before_the_callback_begins_costs_no_attempt(
    tmp_path: Path, reference: dict[str, Any], step: str
) -> None:
    journal, log = tmp_path / "j.duckdb", tmp_path / "log"
    crashed = child(journal, log, f"{step}:granted")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert step not in ran(log)  # told to run, but the callback never began
    done = child(journal, log)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == reference
    assert ran(log) == Counter(STEPS)
    attempts = journal_state(journal).steps[f"do:{step}#1"].attempts
    assert [(a.n, a.ok) for a in attempts] == [(1, True)]  # no attempt cut, no retry spent


KILLS = 8


def test_sigkill_at_random_moments_never_reruns_journaled_steps(
    tmp_path: Path, reference: Any
) -> None:
    journal, log, gate = tmp_path / "j.duckdb", tmp_path / "log", tmp_path / "gate"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).parent.parent),
        "CRASH_STEP_SECONDS": "0.3",
        # Where the kills land depends on the machine's load: on a busy one, process
        # after process dies inside the same step. Every cut attempt is a failed one
        # (WorkflowInternalError), so the steps need a retry for each kill; and the last
        # step waits for the gate, so no process ends the workflow before its kill.
        "CRASH_RETRY_LIMIT": str(KILLS + 1),
        "CRASH_GATE": str(gate),
    }
    rng = random.Random(20261122)
    for k in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(journal), str(log)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stderr is not None
        # from the end of recovery: the kill lands in replay, a commit or a callback
        started = proc.stderr.readline()
        assert started == "engine started\n", (k, started + proc.communicate()[1])
        time.sleep(rng.uniform(0.0, 0.6))
        assert proc.poll() is None, (k, proc.communicate())  # it did not die by itself
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=300)
    gate.touch()
    done = child(journal, log)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == reference
    st = journal_state(journal)
    lines = [line.split() for line in log.read_text().splitlines()]
    for name in STEPS:
        s = st.steps[f"do:{name}#1"]
        ok = [a.n for a in s.attempts if a.ok]
        assert len(ok) == 1, f"{name} has {len(ok)} successful attempts"
        ran_attempts = [int(n) for step, n in lines if step == name]
        assert ran_attempts, f"{name} never ran"
        # nothing ran after the attempt whose result was journaled (an attempt number may
        # repeat: a kill between a callback beginning and its attempt fact's commit
        # leaves no trace, so the next process runs that attempt again, costing no retry)
        assert max(ran_attempts) == ok[0] and ran_attempts[-1] == ok[0]
        # every journaled attempt really began
        assert len(ran_attempts) >= len(s.attempts)
