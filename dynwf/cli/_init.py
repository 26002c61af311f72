"""``dynwf init``: a new platform project, or a new tenant in one, from dynwf's templates."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dynwf.cli._app import app, fail, stdout
from dynwf.scaffold import (
    InvalidTenantIdError,
    ScaffoldError,
    ScaffoldResult,
    add_tenant,
    init_project,
)

_HELP = (
    "Create a dynwf platform project in DIR (default: here), or add a tenant to one.\n\n"
    "A project is a wrangler.toml (a Worker Loader LOADER, one workflow WORKFLOWS "
    "served by DynamicWorkflow, the KV namespace TENANT_CODE), the dispatcher "
    "src/entry.py that routes /<tenant>/... and every workflow step to the tenant's code "
    "(dynwf serves TENANT_CODE from tenants/<tenant>/), two example tenants "
    "(approvals: sleep, then wait for an event; payments: a flaky step with retries), "
    "pytest tests using dynwf.testing, a pyproject.toml for pywrangler, a README and a "
    ".gitignore. The dispatcher and tenants are Cloudflare's Python as it is: no dynwf "
    "import.\n\n"
    "With --tenant NAME it adds tenants/NAME/worker.py and tests/test_NAME.py to the "
    "project in DIR instead. Existing files are never overwritten: they are skipped and listed."
)

_EXAMPLES = """\
Examples:

  dynwf init my-platform && cd my-platform && pytest

  dynwf init                          # a project in the current directory

  dynwf init --tenant acme            # add tenant 'acme' to the project here

  dynwf init --tenant acme-eu my-platform --json

With --json, stdout is one object, paths relative to DIR:

  {"created": \\[str, ...], "skipped": \\[str, ...]}

Tenant ids are what the dispatcher accepts: 1-63 lowercase letters, digits
or hyphens, starting with a letter or digit.

Exit status: 0 done (also when every file existed), 1 DIR is not a directory,
cannot be written, or (with --tenant) has no wrangler config, 2 usage
(including a bad tenant id).
"""


@app.command(help=_HELP, epilog=_EXAMPLES)
def init(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="The project directory (created if missing). Default: the current directory.",
            show_default=False,
        ),
    ] = Path("."),
    tenant: Annotated[
        str | None,
        typer.Option(
            "--tenant",
            "-t",
            metavar="NAME",
            help="Add tenant NAME to the existing project in DIR instead of making a project.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {created, skipped} as one JSON object.")
    ] = False,
) -> None:
    """Create a platform project, or add a tenant (see _HELP)."""
    try:
        result = init_project(directory) if tenant is None else add_tenant(directory, tenant)
    except InvalidTenantIdError as exc:
        raise fail(escape(str(exc)), code=2) from None
    except ScaffoldError as exc:
        raise fail(escape(str(exc))) from None
    if as_json:
        typer.echo(json.dumps({"created": list(result.created), "skipped": list(result.skipped)}))
        return
    _print_files(result)
    if tenant is None:
        _print_project_steps(result)
    else:
        _print_tenant_steps(result, tenant)


def _print_files(result: ScaffoldResult) -> None:
    for path in result.created:
        stdout.print(f"[green]created[/] {escape(path)}")
    for path in result.skipped:
        stdout.print(f"[yellow]skipped (exists):[/] {escape(path)}")
    if not result.created:
        stdout.print("nothing to create: every file exists already")


def _shown(root: Path) -> str:
    try:
        return str(root.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(root.resolve())


def _print_project_steps(result: ScaffoldResult) -> None:
    where = _shown(result.root)
    stdout.print(f"\n[bold green]✔[/] platform project in [bold]{escape(where)}[/]\n")
    stdout.print("Next steps:")
    if where != ".":
        stdout.print(f"  cd {escape(shlex.quote(where))}")
    steps = [
        ("dynwf validate", "check wrangler.toml and the dispatcher"),
        ("pytest", "the example tenants' tests"),
        ("dynwf dev", "serve http://127.0.0.1:8787 with hot reload"),
        (
            'curl -X POST localhost:8787/approvals/expenses -d \'{"amount": 120, "by": "ann"}\'',
            "",
        ),
        ("dynwf init --tenant NAME", "add a tenant"),
    ]
    for command, why in steps:
        stdout.print(f"  {escape(command):<26}" + (f" [dim]# {escape(why)}[/]" if why else ""))


def _print_tenant_steps(result: ScaffoldResult, tenant: str) -> None:
    module = tenant.replace("-", "_")
    stdout.print(
        f"\n[bold green]✔[/] tenant [bold]{escape(tenant)}[/] in tenants/{escape(tenant)}/\n"
    )
    stdout.print("Next steps:")
    stdout.print(f"  pytest tests/test_{escape(module)}.py")
    stdout.print(
        f'  curl -X POST localhost:8787/{escape(tenant)}/runs -d \'{{"name": "Ada"}}\''
        "   [dim]# with `dynwf dev` running[/]"
    )
