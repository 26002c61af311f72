"""``dynwf instances trigger-schedule``: fire a workflow's cron schedule now, in ``dynwf dev``."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from dynwf.cli._app import fail, stdout
from dynwf.cli._inspect import JsonOpt, PersistTo, print_json, status_text
from dynwf.cli._instances import instances
from dynwf.client import STATE_DIR, trigger_schedule
from dynwf.errors import DynwfError, ValidationError

_HELP = (
    "Fire a workflow's cron schedule now: the running `dynwf dev` creates the instance "
    'the schedule would have created, with event["schedule"] = {"cron", '
    '"scheduledTime"} (now, in epoch ms). Needs `dynwf dev` running: only it fires '
    "schedules."
)
_EXAMPLES = """\
Examples:

  dynwf instances trigger-schedule nightly-report

  dynwf instances trigger-schedule REPORTS --cron "0 9 * * MON-FRI" --json

NAME is the workflow's name or binding. With --json, stdout is one object:

  {"id": str, "workflow": str, "cron": str, "scheduledTime": int, "status": str}

Exit status: 0 fired, 1 failed (no dev server, no such workflow), 2 bad command
line (the workflow has no schedules, or none equal to --cron).
"""


@instances.command("trigger-schedule", help=_HELP, epilog=_EXAMPLES)
def trigger(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Workflow name or binding.")],
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron", metavar="EXPR", help="Which of its schedules. Default: the first listed."
        ),
    ] = None,
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
) -> None:
    """Fire a schedule now (see _HELP)."""
    state = persist_to if persist_to is not None else Path(STATE_DIR)
    try:
        fired = asyncio.run(trigger_schedule(state, name, cron))
    except ValidationError as exc:
        raise fail(escape(str(exc)), code=2) from None
    except DynwfError as exc:
        raise fail(escape(str(exc))) from None
    if as_json:
        print_json(fired.as_json())
        return
    stdout.print(f"[dim]via `dynwf dev` at {escape(fired.url)}[/]")
    stdout.print(
        f"[bold green]✔[/] schedule {escape(repr(fired.cron))} fired: instance "
        f"{escape(repr(fired.id))} of workflow {escape(repr(fired.workflow))}; "
        f"status now {status_text(fired.status)}"
    )
    stdout.print(f"[dim]`dynwf inspect {escape(shlex.quote(fired.id))}` follows it[/]")
