"""The typer application and the one place errors become exit codes."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

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


def config_failure(exc: Exception) -> typer.Exit:
    """One line for a config that does not load: the first problem, and where to see all."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    problems = [line for line in lines[1:] if not line.startswith("Run `dynwf validate`")]
    text = lines[0] if lines else "the wrangler config does not load"
    if problems:
        text = f"{text} {problems[0]}"
        if len(problems) > 1:
            text += f" (+{len(problems) - 1} more)"
    return fail(escape(text) + "  (run `dynwf validate` for every problem)")


def main() -> None:
    from dynwf.cli import _commands  # noqa: F401  (registers the commands)
    from dynwf.dispatch._api import show_deprecations

    show_deprecations()

    try:
        app()
    except UsageFailure as exc:
        stderr.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)
    except DynwfError as exc:
        stderr.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
