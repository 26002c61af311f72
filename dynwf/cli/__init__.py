"""The ``dynwf`` command line: a thin typer/rich layer over dynwf's public API.

This package is the only place that imports typer and rich, and the only place
that turns a ``DynwfError`` into red text and an exit code (1 failure, 2 usage).
"""

from __future__ import annotations

from dynwf.cli._app import app, main

__all__ = ["app", "main"]
