"""What dynwf says once at start about the sandbox: what is off, and why."""

from __future__ import annotations

from dynwf.sandbox._apply import Missing, SandboxUnavailableError
from dynwf.sandbox._policy import Policy
from dynwf.sandbox._probe import probe


def startup_notice(policy: Policy, missing: tuple[Missing, ...] | None = None) -> str | None:
    """The line to show at start, or None when the whole sandbox is on. Raises ``SandboxUnavailableError`` under ``require`` when a protection is
    missing. ``missing`` defaults to this machine's ``probe()``."""
    if not policy.on:
        return (
            f"sandbox off ({policy.origin}=off): tenant code runs with all of this user's "
            "access (files, network, processes, environment); for debugging only"
        )
    lacking = probe() if missing is None else missing
    if lacking and policy.mode == "require":
        raise SandboxUnavailableError(
            "--sandbox=require: these protections are not available here: "
            + "; ".join(map(str, lacking))
            + ". Use a Linux kernel with user namespaces, Landlock (5.13+) and seccomp, "
            "or --sandbox=auto to run without them"
        )
    if not lacking:
        return None  # (DYNWF_SANDBOX_ALLOW is a hole the user made: no need to say it)
    return (
        "sandbox: these protections are off on this machine, so tenant code can do there "
        "what a Cloudflare Worker cannot: " + "; ".join(map(str, lacking))
    )
