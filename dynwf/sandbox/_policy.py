"""What the user asked of the sandbox: ``require``, ``auto`` or ``off``, and the allowed folders.

Resolved from ``--sandbox``/``--sandbox-allow`` (``configure``) or ``DYNWF_SANDBOX`` /
``DYNWF_SANDBOX_ALLOW`` (``from_env``). ``configure`` writes the environment so that
every process dynwf starts (isolates, ``dynwf run``'s engine child) sees the same policy.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dynwf.errors import ValidationError

Mode = Literal["require", "auto", "off"]
MODES: tuple[Mode, ...] = ("require", "auto", "off")
MODE_VAR = "DYNWF_SANDBOX"
ALLOW_VAR = "DYNWF_SANDBOX_ALLOW"


@dataclass(frozen=True, slots=True)
class Policy:
    """The sandbox asked for: its mode, the folders tenants may write, and where each came
    from (``"--sandbox"``, ``"DYNWF_SANDBOX"``, ``"default"``)."""

    mode: Mode = "auto"
    allow: tuple[str, ...] = ()
    origin: str = "default"

    @property
    def on(self) -> bool:
        return self.mode != "off"


def _mode(value: str, where: str) -> Mode:
    v = value.strip().lower()
    if v not in MODES:
        raise ValidationError(
            f"{where}={value!r} is not a sandbox mode: use one of {', '.join(MODES)}"
        )
    return v


def _folders(paths: Iterable[str], where: str) -> tuple[str, ...]:
    out: list[str] = []
    for p in paths:
        if not p:
            continue
        path = Path(p).expanduser()
        if not path.exists():
            raise ValidationError(
                f"{where} names {p!r}, which does not exist: create the folder first "
                "(tenants get read-write access to existing folders only)"
            )
        resolved = str(path.resolve())
        if resolved not in out:
            out.append(resolved)
    return tuple(out)


def from_env(environ: Mapping[str, str] | None = None) -> Policy:
    """The policy ``DYNWF_SANDBOX`` and ``DYNWF_SANDBOX_ALLOW`` describe (default: auto)."""
    env = os.environ if environ is None else environ
    raw = env.get(MODE_VAR, "")
    mode = _mode(raw, MODE_VAR) if raw.strip() else "auto"
    allow = _folders(env.get(ALLOW_VAR, "").split(os.pathsep), ALLOW_VAR)
    return Policy(mode, allow, MODE_VAR if raw.strip() else "default")


def configure(mode: str | None = None, allow: Iterable[str | Path] = ()) -> Policy:
    """Set this process's policy (and its children's) from command-line flags.

    ``mode`` None keeps ``DYNWF_SANDBOX`` (or the default); ``allow`` adds to
    ``DYNWF_SANDBOX_ALLOW``. Returns the policy now in force.
    """
    current = from_env()
    chosen = _mode(mode, "--sandbox") if mode is not None else current.mode
    extra = _folders((str(p) for p in allow), "--sandbox-allow")
    folders = current.allow + tuple(p for p in extra if p not in current.allow)
    os.environ[MODE_VAR] = chosen
    if folders:
        os.environ[ALLOW_VAR] = os.pathsep.join(folders)
    origin = "--sandbox" if mode is not None else current.origin
    return Policy(chosen, folders, origin)
