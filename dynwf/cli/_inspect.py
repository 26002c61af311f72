"""``dynwf inspect``: a table of instances, or one instance and its step timeline.

Also the options and the error handling ``dynwf instances`` shares with it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dynwf.cli._app import app, fail, stdout
from dynwf.client import (
    PERSIST_ENV,
    STATE_DIR,
    STATUSES,
    InstanceDetail,
    InstanceSummary,
    StateClient,
    open_state,
    tenant_label,
    tenant_params,
)
from dynwf.errors import DynwfError, ValidationError

T = TypeVar("T")

# -- options and running a client call, shared with `dynwf instances` --------------------
PersistTo = Annotated[
    Path | None,
    typer.Option(
        "--persist-to",
        metavar="DIR",
        envvar=PERSIST_ENV,
        help=f"The project's state directory. Default: {STATE_DIR} in the current directory.",
        show_default=False,
    ),
]
WorkflowOpt = Annotated[
    str | None,
    typer.Option(
        "--workflow", "-w", metavar="NAME", help="Look only at this workflow's instances."
    ),
]
TenantOpt = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        "-t",
        metavar="T",
        help="Look only at this tenant's instances: its scope as listed, or a bare tenant id "
        "(also matches the metadata {\"tenantId\": T}); '' for those no tenant created.",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
StatusOpt = Annotated[
    str | None,
    typer.Option("--status", "-s", metavar="S", help=f"Only this status: {', '.join(STATUSES)}."),
]
LimitOpt = Annotated[
    int | None,
    typer.Option("--limit", "-n", metavar="N", help="At most N instances. Default: 50."),
]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Print every column at full width even in a terminal (always so when piped).",
    ),
]


def with_state(
    persist_to: Path | None, call: Callable[[StateClient], Awaitable[T]]
) -> tuple[StateClient, T]:
    """The client for the project's state and what ``call`` made of it.

    A DynwfError becomes one line on stderr: exit 2 for input the command line gave
    that breaks a rule (a ValidationError), 1 for everything else.
    """
    state = persist_to if persist_to is not None else Path(STATE_DIR)

    async def go() -> tuple[StateClient, T]:
        client = await open_state(state)
        return client, await call(client)

    try:
        return asyncio.run(go())
    except ValidationError as exc:
        raise fail(escape(str(exc)), code=2) from None
    except DynwfError as exc:
        raise fail(escape(str(exc))) from None


def source_line(client: StateClient) -> str:
    if client.kind == "dev":
        return f"[dim]via `dynwf dev` at {escape(client.location)}[/]"
    return f"[dim]from the journal {escape(client.location)}[/]"


def print_json(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))


def table_console(wide: bool) -> Console:
    """Where tables go: the terminal's width in a terminal, unlimited when piped or --wide
    (a table then takes the width its cells need, nothing is cut)."""
    if stdout.is_terminal and not wide:
        # Not soft_wrap: with it rich lets a table run past the terminal's edge.
        return Console(highlight=False)
    return Console(highlight=False, soft_wrap=True, width=100_000)


def list_instances(
    workflow: str | None,
    tenant: str | None,
    status: str | None,
    limit: int | None,
    persist_to: Path | None,
    as_json: bool,
    wide: bool,
) -> None:
    """The instance table (``dynwf inspect`` without ID, ``dynwf instances list``)."""
    shown = limit if limit is not None else 50

    async def listing(client: StateClient) -> list[InstanceSummary]:
        return await client.list_instances(
            workflow=workflow, tenant=tenant, status=status, limit=shown
        )

    client, rows = with_state(persist_to, listing)
    if as_json:
        print_json({"instances": [r.as_json() for r in rows]})
    else:
        _print_list(table_console(wide), client, rows, shown)


# -- the command ------------------------------------------------------------------------
_HELP = (
    "Show the instances of this project, or one instance and its step timeline.\n\n"
    "Without ID: a table of instances, newest first (id, tenant, workflow, status, created, "
    "steps). With ID: the instance (status and what it waits for, the tenant's params, "
    "times, output, error, buffered events, replay warnings, why its code does not load) "
    "and each step with its type, attempts, duration, how often its callback ran and how "
    "often a later pass replayed it from the journal, then every failed attempt's error.\n\n"
    "Values are never cut: a terminal folds them, a pipe (or --wide) gets full lines.\n\n"
    "Reads through the running `dynwf dev` when there is one (its DIR/dev.json), "
    "else straight from the journal DIR/journal.duckdb."
)

_EXAMPLES = """\
Examples:

  dynwf inspect

  dynwf inspect --workflow orders --status errored --limit 10

  dynwf inspect order-17 --tenant acme

  dynwf inspect --wide            # full width in a terminal too (a pipe always gets it)

  dynwf inspect order-17 --json | jq '.steps[] | {name, executions, replays}'

With --json and no ID, stdout is one object:

  {"instances": [{"id": str, "tenant": str, "workflow": str,
    "status": str, "created": str | null, "steps": int}]}

With --json and an ID, the explorer API's instance detail plus dynwf's keys:

  {"id": str, "workflow": str, "tenant": str, "status": str,
   "params": any, "queued": str | null, "start": str | null,
   "end": str | null, "output": any,
   "error": {"name": str, "message": str} | null,
   "steps": [{"name": "<step>-<count>",
     "type": "step" | "sleep" | "waitForEvent",
     "start": str | null, "end": str | null,
     "success": bool | null, "output"?: any, "config": {...},
     "attempts": [{"start", "end", "success", "error"}],
     "finished"?: bool, "error"?: {...} | null,
     "sleep_ms"?: int, "event_type"?: str,
     "executions": int, "replays": int, "wake_at": str | null}],
   "step_count": int, "warnings": [str],
   "events": [{"type", "payload", "timestamp", "consumed"}], "passes": int, "parked": str | null,
   "expires": str | null}

"success", "output", "config" and "attempts" are on "step" steps;
"finished" and "error" on sleeps and waits; "sleep_ms" on sleeps;
"event_type" on waits. "wake_at" is an unfinished step's next timer (the
sleep's end, the retry, the wait's deadline), else null. "params" is as
stored: the dispatcher's envelope around the tenant's params. "events" are
every event sent ("consumed" once a wait took it); "passes" counts run
passes; "parked" says why the instance's code does not load. Times are
ISO 8601 UTC.
A tenant of "" means no tenant created the instance.

Exit status: 0 shown, 1 failed (no such instance, an ambiguous id,
journal in use, ...), 2 bad command line (an unknown --status, ...).
Errors go to stderr as one line, also with --json.
"""


@app.command(help=_HELP, epilog=_EXAMPLES)
def inspect(
    id: Annotated[
        str | None, typer.Argument(metavar="ID", help="An instance id; omit it to list instances.")
    ] = None,
    workflow: WorkflowOpt = None,
    tenant: TenantOpt = None,
    status: StatusOpt = None,
    limit: LimitOpt = None,
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List instances or describe one (see _HELP)."""
    if id is None:
        list_instances(workflow, tenant, status, limit, persist_to, as_json, wide)
        return
    if status is not None or limit is not None:
        raise fail(
            "--status and --limit filter the instance list: drop them when you give an ID", code=2
        )

    async def describing(client: StateClient) -> InstanceDetail:
        return await client.describe(id, workflow=workflow, tenant=tenant)

    client, detail = with_state(persist_to, describing)
    if as_json:
        print_json(detail)
    else:
        _print_detail(table_console(wide), client, detail)


# -- human output ---------------------------------------------------------------------
_STATUS_STYLE = {
    "complete": "green",
    "errored": "red",
    "terminated": "red",
    "paused": "yellow",
    "waitingForPause": "yellow",
    "running": "cyan",
    "waiting": "blue",
    "queued": "blue",
}


def status_text(status: str) -> str:
    return f"[{_STATUS_STYLE.get(status, 'magenta')}]{escape(status)}[/]"


def _tenant_text(tenant: str) -> str:
    return escape(tenant_label(tenant)) if tenant else "[dim]-[/]"


def _when(iso: str | None) -> str:
    """``2027-01-15 08:00:00`` (UTC) from an ISO time; the table has no room for ms."""
    if not iso:
        return "[dim]-[/]"
    return escape(iso[:19].replace("T", " "))


def _print_list(out: Console, client: StateClient, rows: list[InstanceSummary], limit: int) -> None:
    out.print(source_line(client))
    if not rows:
        out.print("No instances match.")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    # In a narrow terminal every column folds (the date wraps at its space) rather than
    # cutting a value with an ellipsis; piped, the console is as wide as the table needs.
    table.add_column("ID", overflow="fold")
    table.add_column("Tenant", overflow="fold")
    table.add_column("Workflow", overflow="fold")
    table.add_column("Status", no_wrap=True)
    table.add_column("Created (UTC)", overflow="fold")
    table.add_column("Steps", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            escape(r.id),
            _tenant_text(r.tenant),
            escape(r.workflow),
            status_text(r.status),
            _when(r.created),
            str(r.steps),
        )
    out.print(table)
    out.print()
    more = f"; the newest {limit} are shown, --limit shows more" if len(rows) == limit else ""
    out.print(f"[dim]{len(rows)} instance{'' if len(rows) == 1 else 's'}{more}[/]")


def _print_detail(out: Console, client: StateClient, d: InstanceDetail) -> None:
    out.print(source_line(client))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(overflow="fold")
    scope = str(d.get("tenant") or "")
    head.add_row("Instance", escape(str(d.get("id"))))
    head.add_row("Workflow", escape(str(d.get("workflow"))))
    head.add_row("Tenant", _tenant_text(scope))
    status = str(d.get("status"))
    head.add_row("Status", status_text(status) + _status_note(d))
    if d.get("parked"):
        head.add_row(
            "Parked",
            f"[red]code will not load ({escape(str(d['parked']))})[/]: fix the tenant's code; "
            "`dynwf dev` reloads it and runs the instance again",
        )
    head.add_row("Queued", _when(d.get("queued")))
    head.add_row("Started", _when(d.get("start")))
    head.add_row("Ended", _when(d.get("end")))
    if d.get("expires"):
        head.add_row("Expires", _when(d.get("expires")) + " [dim](retention: gone after this)[/]")
    took = _span(d.get("start"), d.get("end"))
    if took:
        head.add_row("Duration", took)
    split = tenant_params(d.get("params"))
    if split is None:
        head.add_row("Params", escape(_json(d.get("params"))))
    else:
        metadata, params = split
        head.add_row("Params", escape(_json(params)))
        if metadata != {"tenantId": tenant_label(scope)}:  # more than the tenant row says
            head.add_row("Metadata", escape(_json(metadata)))
    if status == "complete":
        head.add_row("Output", escape(_json(d.get("output"))))
    if d.get("error"):
        head.add_row("Error", f"[red]{escape(_error_text(d['error']))}[/]")
    for ev in d.get("events") or []:
        if ev.get("consumed"):
            continue
        head.add_row(
            "Event",
            f"{escape(str(ev.get('type')))} {escape(_json(ev.get('payload')))} "
            f"[dim](sent {_when(ev.get('timestamp'))}, buffered: no wait has taken it yet)[/]",
        )
    for w in d.get("warnings") or []:
        message = w.get("message") if isinstance(w, dict) else w
        head.add_row("Warning", f"[yellow]{escape(str(message))}[/]")
    if d.get("parked"):
        why = escape(str(d["parked"]))
        head.add_row("Parked", f"[yellow]{why}[/] [dim](runs again when its code loads)[/]")
    out.print(head)
    steps = d.get("steps") or []
    if not steps:
        out.print("[dim]No steps yet.[/]")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    table.add_column("Step", overflow="fold")
    table.add_column("Type", no_wrap=True)
    table.add_column("Attempts", justify="right")
    table.add_column("Duration", justify="right", no_wrap=True)
    table.add_column("Ran", justify="right")
    table.add_column("Replayed", justify="right")
    table.add_column("Output / error", overflow="fold")
    for s in steps:
        table.add_row(*_step_row(s))
    out.print(table)
    failures = [
        (str(s.get("name")), n, a)
        for s in steps
        for n, a in enumerate(s.get("attempts") or [], 1)
        if a.get("success") is False
    ]
    if failures:
        out.print("[bold]Failed attempts[/]")
        for name, n, a in failures:
            out.print(
                f"  {escape(name)} attempt {n} [dim]({_when(a.get('start'))})[/]: "
                f"[red]{escape(_error_text(a.get('error')))}[/]"
            )
    if client.kind == "journal" and d.get("status") in ("waiting", "queued", "running"):
        out.print("[dim]nothing runs it until `dynwf dev` opens this state[/]")


def _status_note(d: InstanceDetail) -> str:
    """What a waiting instance waits for, in words."""
    if d.get("status") != "waiting" or d.get("parked"):
        return ""
    notes = []
    for s in d.get("steps") or []:
        kind = s.get("type")
        if kind == "sleep" and not s.get("finished"):
            notes.append(
                f"sleeping in {s.get('name')} until {_when(s.get('wake_at'))}{_in(s.get('wake_at'))}"
            )
        elif kind == "waitForEvent" and not s.get("finished"):
            notes.append(
                f"waiting for event {escape(repr(s.get('event_type')))} in {escape(str(s.get('name')))}"
                f" until {_when(s.get('wake_at'))}{_in(s.get('wake_at'))}"
            )
        elif kind == "step" and s.get("wake_at"):
            notes.append(
                f"retrying {escape(str(s.get('name')))} at {_when(s.get('wake_at'))}{_in(s.get('wake_at'))}"
            )
    return f"  [dim]({'; '.join(notes)})[/]" if notes else ""


def _in(iso: str | None) -> str:
    """`` (in 59m 58s)`` or `` (due)`` from now to ``iso``."""
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return ""
    ms = int((at - datetime.now(UTC)).total_seconds() * 1000)
    return " (due now)" if ms <= 0 else f" (in {duration_text(ms)})"


def _step_row(s: dict[str, Any]) -> tuple[str, ...]:
    kind = str(s.get("type", "?"))
    attempts = s.get("attempts") or []
    if kind == "step":
        failed = sum(1 for a in attempts if a.get("success") is False)
        tries = f"{len(attempts)}" + (f" [red]({failed} failed)[/]" if failed else "")
        ran = str(s.get("executions", len(attempts)))
    else:
        tries, ran = "[dim]-[/]", "[dim]-[/]"
    took = _span(s.get("start"), s.get("end")) or "[dim]…[/]"
    return (
        escape(str(s.get("name"))),
        escape(kind),
        tries,
        took,
        ran,
        str(s.get("replays", "-")),
        _step_result(kind, s, attempts),
    )


def _step_result(kind: str, s: dict[str, Any], attempts: list[dict[str, Any]]) -> str:
    if kind == "step":
        if s.get("success"):
            return escape(_json(s.get("output")))
        last = attempts[-1].get("error") if attempts else None
        if s.get("success") is False:
            return f"[red]{escape(_error_text(last))}[/]"
        if last:
            at = f" at {_when(s.get('wake_at'))}" if s.get("wake_at") else ""
            return f"[yellow]retrying{at} after {escape(_error_text(last))}[/]"
        return "[dim]running[/]"
    if s.get("error"):
        return f"[red]{escape(_error_text(s['error']))}[/]"
    if kind == "waitForEvent":
        out = s.get("output")
        if isinstance(out, dict) and "payload" in out:
            return escape(f"{out.get('type')}: {_json(out.get('payload'))}")
        if s.get("finished"):
            return ""
        waited = f" {escape(repr(s['event_type']))}" if s.get("event_type") else ""
        until = f" until {_when(s.get('wake_at'))}" if s.get("wake_at") else ""
        return f"[dim]waiting for event{waited}{until}[/]"
    if s.get("finished"):
        return f"[dim]slept until {_when(s.get('end'))}[/]" if s.get("end") else ""
    until = _when(s.get("wake_at")) if s.get("wake_at") else ""
    return f"[dim]sleeping until {until}[/]" if until else "[dim]sleeping[/]"


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        name, message = error.get("name") or "Error", error.get("message")
        return f"{name}: {message}" if message else str(name)
    return str(error)


def _json(value: Any) -> str:
    """A value in full, as compact JSON (a terminal folds it; a pipe gets one line)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _span(start: str | None, end: str | None) -> str:
    if not start or not end:
        return ""
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return duration_text(int((b - a).total_seconds() * 1000))


def duration_text(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    units = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))
    parts = []
    for name, size in units:
        if ms >= size:
            parts.append(f"{ms // size}{name}")
            ms %= size
        if len(parts) == 2:
            break
    return " ".join(parts)
