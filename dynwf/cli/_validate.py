"""``dynwf validate``: wrangler's config rules, the checks that need the Python, and portability."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dynwf.cli._app import app, stderr, stdout
from dynwf.config import ConfigFileError, Diagnostic, ValidationReport, validate_project

_HELP = (
    "Check wrangler.toml / wrangler.jsonc / wrangler.json the way wrangler does, plus what "
    "only dynwf can check.\n\n"
    "wrangler's rules for workflows, worker_loaders and binding names, with wrangler's "
    "messages; then that compatibility_date is a real date, not in the future, that main "
    "imports (in a separate interpreter), that each workflow class_name is a "
    "WorkflowEntrypoint defined in main, and that a Worker Loader the code uses is declared.\n\n"
    "Portability: reads (never runs) the dispatcher (main and its folder) and every tenant "
    "(tenants/*/) for what fails on Cloudflare (errors, e.g. `import dynwf`, `event.payload`, "
    "bare `@step.do`, `get_entrypoint`, a Worker Loader callback without create_proxy) or is "
    "unverified there (warnings), each with file:line:col and the portable form to write."
)

_EXAMPLES = """\
Examples:

  dynwf validate

  dynwf validate --config wrangler.jsonc

  dynwf validate --json | jq '.diagnostics[] | select(.severity == "error")'

With --json, stdout is one object:

  {"valid": bool, "config": str, "diagnostics": [
    {"severity": "error" | "warning", "message": str,
     "file": str, "line": int, "column": int, "code": str,
     "portable": str | null}]}

Lines and columns are 1-based. "code" is "wrangler.*" for wrangler's
own rules, "dynwf.*" for checks only dynwf makes,
"dynwf.portability.<rule>" for code that fails (error) or is unverified
(warning) on Cloudflare, with "portable" the form to write instead, and
"dynwf.config.unreadable" when the file cannot be read or parsed.

Exit status: 0 valid (warnings allowed), 1 invalid,
2 config file missing, unreadable or unparseable.
"""


@app.command(help=_HELP, epilog=_EXAMPLES)
def validate(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="FILE",
            help="Config file to check. Default: wrangler.toml, wrangler.jsonc or wrangler.json "
            "in the current directory.",
            dir_okay=True,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")
    ] = False,
) -> None:
    """Validate the project's wrangler config (see _HELP)."""
    target = config if config is not None else Path.cwd()
    try:
        report = validate_project(target)
    except ConfigFileError as exc:
        if as_json:
            _print_json(_unreadable(exc))
        else:
            stderr.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if as_json:
        _print_json(_report_json(report))
    else:
        _print_report(report)
    raise typer.Exit(0 if report.valid else 1)


def _print_json(payload: dict[str, object]) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def _diagnostic_json(d: Diagnostic) -> dict[str, object]:
    return {
        "severity": d.severity,
        "message": d.message,
        "file": d.file,
        "line": d.line,
        "column": d.column,
        "code": d.code,
        "portable": d.portable,
    }


def _report_json(report: ValidationReport) -> dict[str, object]:
    return {
        "valid": report.valid,
        "config": str(report.config_path),
        "diagnostics": [_diagnostic_json(d) for d in report.diagnostics],
    }


def _unreadable(exc: ConfigFileError) -> dict[str, object]:
    problem = Diagnostic(
        "error",
        exc.reason,
        str(exc.file),
        exc.line or 1,
        exc.column or 1,
        "dynwf.config.unreadable",
    )
    return {"valid": False, "config": str(exc.file), "diagnostics": [_diagnostic_json(problem)]}


def _shown(file: str) -> str:
    try:
        return str(Path(file).relative_to(Path.cwd()))
    except ValueError:
        return file


def _print_section(title: str, style: str, diagnostics: tuple[Diagnostic, ...]) -> None:
    config = [d for d in diagnostics if d.portable is None]
    portability = [d for d in diagnostics if d.portable is not None]
    if config:
        stdout.print(f"[{style}]{escape(title)}[/] Processing wrangler configuration:")
        for d in config:
            _print_one(d, style)
        stdout.print()
    if portability:
        stdout.print(f"[{style}]{escape(title)}[/] Portability to Cloudflare:")
        for d in portability:
            _print_one(d, style)
        stdout.print()


def _print_one(d: Diagnostic, style: str) -> None:
    # wrangler indents continuation lines of a message under its first line.
    message = escape(d.message).replace("\n", "\n    ")
    where = escape(f"{_shown(d.file)}:{d.line}:{d.column}")
    rule = f" [dim]({escape(d.code.removeprefix('dynwf.portability.'))})[/]" if d.portable else ""
    stdout.print(f"  - [{style.split()[-1]}]{message}[/]{rule}\n    [dim]at {where}[/]")
    if d.portable is not None:
        stdout.print(f"    use: {escape(d.portable)}")


def _print_report(report: ValidationReport) -> None:
    errors, warnings = report.errors, report.warnings
    if warnings:
        _print_section("▲ [WARNING]", "bold yellow", warnings)
    if errors:
        _print_section("✘ [ERROR]", "bold red", errors)
    counts = f"{_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}"
    shown = escape(_shown(str(report.config_path)))
    if report.valid:
        stdout.print(f"[bold green]✔[/] {shown} is valid ({counts})")
    else:
        stdout.print(f"[bold red]✘[/] {shown} is invalid ({counts})")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
