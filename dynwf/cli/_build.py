"""``dynwf build``: a thin layer over ``dynwf.build.build_project``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dynwf.build import BuildReport, build_project
from dynwf.cli._app import app, stderr, stdout
from dynwf.config import ConfigFileError

_HELP = (
    "Write the tree `pywrangler deploy` uploads (default: dist/), check that it deploys to "
    "Cloudflare as it is, and list what is left to do by hand.\n\n"
    "The tree is the main module's folder, python_modules/, the wrangler config and a "
    "pyproject.toml naming workers-py, with no dynwf import anywhere in it; plus "
    "tenant-code.json, the TENANT_CODE KV content for `npx wrangler kv bulk put`. "
    "Every check of `dynwf validate` runs (except importing main under dynwf), and each "
    "step you must still do is printed with its command (vendor dynamic_workflows, create "
    "the KV namespace, upload the tenant code, deploy)."
)

_EXAMPLES = """\
Examples:

  dynwf build                      # writes dist/

  dynwf build --check              # checks the project in place, writes nothing

  dynwf build --out /tmp/deploy --json

With --json, stdout is one object:

  {"deployable": bool, "out": str | null, "files": [str],
   "kv_keys": int, "diagnostics": [ {as in `dynwf validate --json`} ],
   "todo": [{"text": str, "command": str | null, "blocking": bool}]}

Exit status: 0 when the tree deploys as it is (no error, no blocking step
left), 1 when it would fail to deploy, 2 when the config is missing or
unparseable or --out cannot be used.
"""


@app.command(help=_HELP, epilog=_EXAMPLES)
def build(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Config file or project folder. Default: the current directory.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="DIR", help="Where to write the tree (default dist/)."),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Check the project in place; write nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
    ] = False,
) -> None:
    """Build the deployable tree (see _HELP)."""
    from dynwf.build import BuildError

    try:
        report = build_project(config or Path.cwd(), out, check_only=check)
    except (ConfigFileError, BuildError) as exc:
        stderr.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(_report_json(report), indent=2, ensure_ascii=False))
    else:
        _print(report)
    raise typer.Exit(0 if report.deployable else 1)


def _report_json(report: BuildReport) -> dict[str, object]:
    return {
        "deployable": report.deployable,
        "out": str(report.out_dir) if report.out_dir is not None else None,
        "files": list(report.files),
        "kv_keys": report.kv_keys,
        "diagnostics": [
            {
                "severity": d.severity,
                "message": d.message,
                "file": d.file,
                "line": d.line,
                "column": d.column,
                "code": d.code,
                "portable": d.portable,
            }
            for d in report.diagnostics
        ],
        "todo": [
            {"text": t.text, "command": t.command, "blocking": t.blocking} for t in report.todo
        ],
    }


def _shown(file: str) -> str:
    try:
        return str(Path(file).relative_to(Path.cwd()))
    except ValueError:
        return file


def _print(report: BuildReport) -> None:
    for d in report.diagnostics:
        style = "red" if d.severity == "error" else "yellow"
        where = escape(f"{_shown(d.file)}:{d.line}:{d.column}")
        stdout.print(f"[{style}]{d.severity}:[/] {escape(d.message)} [dim]({d.code})[/]")
        stdout.print(f"    [dim]at {where}[/]")
        if d.portable:
            stdout.print(f"    use: {escape(d.portable)}")
    if report.out_dir is not None:
        stdout.print(
            f"wrote {len(report.files)} files to {escape(_shown(str(report.out_dir)))}"
            f" ({report.kv_keys} tenant-code keys)"
        )
    if report.todo:
        stdout.print("\nLeft to do:")
    for number, todo in enumerate(report.todo, 1):
        mark = "[bold red]required[/]" if todo.blocking else "[dim]then[/]"
        stdout.print(f"  {number}. {mark} {escape(todo.text)}")
        if todo.command:
            stdout.print(f"       [bold]{escape(todo.command)}[/]")
    if report.deployable:
        stdout.print("\n[bold green]✔[/] deployable as it is")
    else:
        blocking = sum(t.blocking for t in report.todo)
        stdout.print(
            f"\n[bold red]✘[/] not deployable yet: {len(report.errors)} error(s), "
            f"{blocking} required step(s) left"
        )
