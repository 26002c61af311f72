"""The typer application and the one place errors become exit codes."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from dynwf.errors import DynwfError

app = typer.Typer(
    name="dynwf",
    help="Local, durable Cloudflare Dynamic Workflows for Python.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Local, durable Cloudflare Dynamic Workflows for Python."""


stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


class UsageFailure(DynwfError):
    """A command line that cannot be carried out as written (exit 2)."""


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    stderr.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def main() -> None:
    from dynwf.cli import _commands  # noqa: F401  (registers the commands)

    try:
        app()
    except UsageFailure as exc:
        stderr.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except DynwfError as exc:
        stderr.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
