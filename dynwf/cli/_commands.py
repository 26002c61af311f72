"""Imports every command module so each registers itself on ``app``."""

from __future__ import annotations

from dynwf.cli import (
    _build,  # noqa: F401
    _dev,  # noqa: F401
    _init,  # noqa: F401
    _inspect,  # noqa: F401
    _instances,  # noqa: F401
    _run,  # noqa: F401
    _schedules,  # noqa: F401
    _validate,  # noqa: F401
)
