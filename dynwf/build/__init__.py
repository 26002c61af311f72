"""``dynwf build``: the tree ``pywrangler deploy`` uploads, checked, and what is left to do."""

from __future__ import annotations

from dynwf.build._build import (
    DEFAULT_OUT,
    KV_BINDING,
    KV_FILE,
    BuildError,
    BuildReport,
    Todo,
    build_project,
)

__all__ = [
    "DEFAULT_OUT",
    "KV_BINDING",
    "KV_FILE",
    "BuildError",
    "BuildReport",
    "Todo",
    "build_project",
]
