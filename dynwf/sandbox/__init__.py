"""The Linux sandbox for isolates: a tenant touches only what a Cloudflare Worker could.

An isolate process runs its tenant's code with its own modules and the Python runtime
as its whole filesystem (Landlock), no network (its own network namespace, no sockets),
no processes and no signals beyond itself (seccomp), an environment without the
engine's variables, and a file-size cap; its protocol socket to the engine is its only
channel out. Two entry points put a process in it: ``confine_shared`` (what every
isolate shares, once per process or template) and ``confine_isolate`` (per isolate,
before its tenant's code is imported; its modules folder is read-only to it, the
engine writes the modules there). ``probe`` says, at start, what this kernel lacks;
``policy_from_env``/``configure`` read ``--sandbox``, ``DYNWF_SANDBOX`` and
``DYNWF_SANDBOX_ALLOW``.
"""

from __future__ import annotations

from dynwf.sandbox._apply import (
    MAX_FILE_BYTES,
    Missing,
    SandboxUnavailableError,
    confine_isolate,
    confine_shared,
    isolate_environ,
    isolate_ruleset,
    runtime_paths,
)
from dynwf.sandbox._policy import ALLOW_VAR, MODE_VAR, MODES, Mode, Policy, configure
from dynwf.sandbox._policy import from_env as policy_from_env
from dynwf.sandbox._probe import probe
from dynwf.sandbox._report import startup_notice

__all__ = [
    "ALLOW_VAR",
    "MAX_FILE_BYTES",
    "MODES",
    "MODE_VAR",
    "Missing",
    "Mode",
    "Policy",
    "SandboxUnavailableError",
    "configure",
    "confine_isolate",
    "confine_shared",
    "isolate_environ",
    "isolate_ruleset",
    "policy_from_env",
    "probe",
    "runtime_paths",
    "startup_notice",
]
