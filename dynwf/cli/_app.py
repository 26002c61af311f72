"""The typer application, the one place errors become exit codes, and what every command shares.

Short options mean one thing in every command: ``-t`` ``--tenant``, ``-w``
``--workflow``, ``-p`` ``--params``, ``-c`` ``--config``, ``-s`` ``--status``,
``-n`` ``--limit``. JSON input (``--params``, ``--metadata``, ``--payload``) is
given inline, as ``@FILE`` (``@-`` for stdin), or with the matching ``--...-file``.
"""

from __future__ import annotations

import json
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from dynwf import sandbox
from dynwf.errors import DynwfError, ValidationError

app = typer.Typer(
    name="dynwf",
    help="Local, durable Cloudflare Dynamic Workflows for Python.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def dynwf_version() -> str:
    try:
        return version("dynwf")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dynwf {dynwf_version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print dynwf's version and exit.",
        ),
    ] = False,
) -> None:
    """Local, durable Cloudflare Dynamic Workflows for Python."""


stderr = Console(stderr=True, highlight=False, soft_wrap=True)
stdout = Console(highlight=False, soft_wrap=True)


class UsageFailure(DynwfError):
    """A command line that cannot be carried out as written (exit 2)."""


def fail(message: str, *, code: int = 1) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    stderr.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE|DIR",
        help="wrangler.toml/.jsonc/.json or its directory.",
    ),
]
AcceptDataLossOption = Annotated[
    bool,
    typer.Option(
        "--accept-data-loss",
        help="Open a journal that lacks facts its last writer committed "
        "(a lost .wal or .tail) instead of refusing it.",
    ),
]
SandboxOption = Annotated[
    str | None,
    typer.Option(
        "--sandbox",
        metavar="require|auto|off",
        help="Tenant isolates in the Linux sandbox: auto (default: what the kernel offers, "
        "and say once what is off), require (an error if anything is off), off (debugging). "
        "Default: $DYNWF_SANDBOX or auto.",
    ),
]
SandboxAllowOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--sandbox-allow",
        metavar="DIR",
        help="A folder tenants may read and write (repeatable; also $DYNWF_SANDBOX_ALLOW, "
        "':'-separated). A testing aid, e.g. for step counters: Cloudflare has no equivalent.",
    ),
]


def start_sandbox(mode: str | None, allow: list[Path] | None, *, inline: bool = False) -> None:
    """Settle the sandbox policy for this command and its processes; say once what is off."""
    try:
        policy = sandbox.configure(mode, allow or [])
        notice = (
            "sandbox off: --inline runs tenant code in this process, with all of its access"
            if inline
            else sandbox.startup_notice(policy)
        )
    except ValidationError as exc:
        raise fail(escape(str(exc)), code=2) from None
    except DynwfError as exc:
        raise fail(escape(str(exc))) from None
    if notice:
        for line in notice.splitlines():
            stderr.print(f"[yellow]{escape(line)}[/]")


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


def json_input(text: str | None, file: Path | None, option: str) -> Any:
    """The JSON value of ``--<option>`` (inline, ``@FILE`` or ``@-``) or ``--<option>-file``.

    None when neither is given. Raises UsageFailure (exit 2) naming what is wrong.
    """
    if text is not None and file is not None:
        raise UsageFailure(f"give --{option} or --{option}-file, not both")
    source, where = text, f"--{option}"
    if file is None and text is not None and text.startswith("@"):
        file = Path(text[1:])
    if file is not None:
        where = f"--{option} file {file}"
        try:
            source = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageFailure(
                f"cannot read {where}: {exc.strerror or exc}; check the path "
                f"(write --{option} @FILE or --{option}-file FILE)"
            ) from None
    if source is None:
        return None
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        example = shlex.quote('{"name": "Ada"}')
        raise UsageFailure(
            f"{where} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
            f"write e.g. --{option} {example}, or --{option} @FILE for a JSON file"
        ) from None


def main() -> None:
    from dynwf.cli import _commands  # noqa: F401  (registers the commands)
    from dynwf.dispatch._api import show_deprecations

    show_deprecations()

    try:
        app(prog_name="dynwf")
    except UsageFailure as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except DynwfError as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(1)
