"""Which protections this machine can give, found by trying them in a throwaway process.

``main`` (run in a fresh interpreter) enters the sandbox as an isolate would (with an empty
modules folder) and prints the protections left off as JSON; ``probe()`` runs it once
per engine process, at start, so that dynwf can say then what is off.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile

from dynwf.sandbox._apply import Missing, confine_isolate, confine_shared, isolate_environ
from dynwf.sandbox._policy import Policy
from dynwf.sandbox._sys import libc

_RUN = "import sys; from dynwf.sandbox._probe import main; main(sys.argv[1])"


@functools.cache
def probe() -> tuple[Missing, ...]:
    """The protections this machine lacks (empty when the sandbox is complete)."""
    if not sys.platform.startswith("linux"):
        return (Missing("all protections", f"{sys.platform} is not Linux"),)
    env = isolate_environ(os.environ)
    env.pop("DYNWF_SANDBOX", None)
    env.pop("DYNWF_SANDBOX_ALLOW", None)  # an allowed folder need not exist for the probe
    try:
        with tempfile.TemporaryDirectory(prefix="dynwf-probe-") as root:
            out = subprocess.run(
                [sys.executable, "-c", _RUN, root],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=True,
            ).stdout
        return tuple(Missing(p, r) for p, r in json.loads(out.strip().splitlines()[-1]))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return (Missing("all protections", f"the sandbox probe failed: {exc}"),)


def main(root: str) -> None:
    policy = Policy("auto")
    missing = confine_shared(policy) + confine_isolate(policy, root)
    if not missing:  # the filter holds: the C library's fork must be refused
        child = libc().fork()
        if child == 0:
            os._exit(0)
        if child > 0:
            os.waitpid(child, 0)
            missing.append(Missing("process limits", "fork still works under seccomp"))
    print(json.dumps([[m.protection, m.reason] for m in missing]))
