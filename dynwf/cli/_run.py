"""``dynwf run``: one instance through the dispatcher, real crashes and evictions, a report."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from dynwf.cli._app import (
    AcceptDataLossOption,
    ConfigOption,
    SandboxAllowOption,
    SandboxOption,
    app,
    config_failure,
    fail,
    json_input,
    start_sandbox,
    stderr,
    stdout,
)
from dynwf.cli._inspect import duration_text
from dynwf.client import tenant_arg, tenant_label
from dynwf.errors import ConfigError, DynwfError, ValidationError
from dynwf.run import EXIT_USAGE, RunReport, run_workflow

_EXAMPLES = """\
Examples:

  dynwf run --tenant acme --params '{"name": "Ada"}'

  dynwf run -t acme --params @order.json                   # or --params-file order.json

  dynwf run --tenant acme --crash-at charge                 # SIGKILL right after 'charge' is journaled

  dynwf run --tenant acme --crash-at charge:during --crash-at ship#2:before --skip-retry-delays

  dynwf run --tenant acme --evict-at reserve                # drop the tenant's code after 'reserve'

  dynwf run --tenant acme --hibernate-every-step --skip-sleeps --json

Crash points: STEP\\[#N]\\[:before|:after|:during] is the N-th call (default 1) of the step
named STEP; :after (default) kills the engine right after its result is journaled,
:before after the callback returned but before the journal write, :during while the
callback runs (once its isolate reported that the callback's code up to its first
await ran; its result never reaches the journal, and recovery counts the attempt as
failed and runs it again). Each kill is a real SIGKILL of the engine process; a fresh
process recovers the instance from the journal and carries on.

The run uses the project's state (.dynwf/), so `dynwf inspect ID` shows it afterwards;
stop a running `dynwf dev` on the same state first, or pass --persist-to. It runs its
own instance only: other unfinished instances in that state wait for `dynwf dev`.
While it runs, stderr shows each attempt as it starts and ends; tenant print()
output goes to stderr too, so stdout holds only the report.

Exit status: 0 complete, 1 errored / terminated / failed to run / replay diverged
(unless --allow-divergence), 2 usage, 3 waiting (for an event, a pause to end, or a
sleep or retry longer than --max-wait).

--json prints one object: instance, workflow, tenant (the metadata), scope, status,
output, error, waiting, parked, processes, markers, unreached, warnings, steps (name,
type, executions, unreported, replays, attempts, failed_attempts, success, output, error,
attempt_errors, markers), exit_code, seconds.
"""


def _progress_line(event: dict[str, Any]) -> None:
    """One stderr line per attempt start/end and per wait, while the run goes on."""
    kind = event.get("kind")
    step = escape(f"{event.get('step')}")
    if kind == "start":
        again = f" (attempt {event['attempt']})" if event.get("attempt", 1) > 1 else ""
        stderr.print(f"[dim]▸[/] {step}#{event.get('count', 1)}{again} …")
    elif kind == "end":
        took = duration_text(int(event.get("ms") or 0))
        if event.get("ok"):
            stderr.print(f"[green]✔[/] {step}  {took}")
        else:
            err = event.get("error") or {}
            text = f"{err.get('name', 'Error')}: {err.get('message', '')}".rstrip(": ")
            stderr.print(
                f"[red]✗[/] {step}  attempt {event.get('attempt')}  {took}  [red]{escape(text)}[/]"
            )
    elif kind == "waiting":
        now = int(event.get("now") or 0)
        for w in event.get("on") or []:
            if w.get("type") == "waitForEvent":
                what = f"waiting for event {escape(repr(w.get('event')))} ({escape(str(w.get('step')))})"
            elif w.get("type") == "sleep":
                what = f"sleeping in {escape(str(w.get('step')))}"
            else:
                what = f"waiting to retry {escape(str(w.get('step')))}"
            until = w.get("until")
            if until is not None and int(until) <= now:
                continue  # skipped (--skip-sleeps / --skip-retry-delays): it ends at once
            left = f" for {duration_text(int(until) - now)}" if until is not None else ""
            stderr.print(f"[blue]…[/] {what}{left}")


def _short(value: Any, width: int = 48) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_report(r: RunReport) -> None:
    stdout.print(
        f"[bold]dynwf run[/]  tenant [bold]{escape(tenant_label(r.scope))}[/]  "
        f"workflow {escape(r.workflow)}  instance [bold]{escape(r.instance)}[/]"
    )
    crashes = sum(1 for m in r.markers if m["kind"] == "crash")
    evictions = sum(1 for m in r.markers if m["kind"] == "evict")
    stdout.print(
        f"engine processes: {r.processes}  crashes: {crashes}  evictions: {evictions}  "
        f"time: {r.seconds:.2f} s"
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("step", no_wrap=True)
    table.add_column("type", no_wrap=True, min_width=5)
    table.add_column("ran", justify="right", min_width=3)
    table.add_column("replays", justify="right", min_width=7)
    table.add_column("attempts", justify="right", no_wrap=True, min_width=8)
    table.add_column("result / error", overflow="ellipsis", no_wrap=True, max_width=22)
    for s in r.steps:
        if s["error"]:
            result = (
                f"[red]{escape(s['error']['name'])}: {escape(_short(s['error']['message'], 40))}[/]"
            )
        elif s["type"] == "step":
            result = escape(_short(s["output"]))
        else:
            result = "[dim]done[/]" if s["success"] else "[yellow]waiting[/]"
        attempts = "" if s["type"] != "step" else str(s["attempts"])
        if s["failed_attempts"]:
            attempts += f" [red]({s['failed_attempts']} ✗)[/]"
        ran = "-" if s["type"] != "step" else str(s["executions"])
        if s.get("unreported"):  # attempt facts and reported callbacks differ: show both
            ran += f" [yellow]/ {s['executions'] + s['unreported']}[/]"
        step = escape(s["name"])
        for m in s["markers"]:  # crash/evict markers under the step they hit
            step += f"\n [magenta]↯ {escape(m.replace(' (process ', ' @').rstrip(')'))}[/]"
        kind = {"step": "do", "waitForEvent": "event"}.get(s["type"], s["type"])
        table.add_row(step, kind, ran, str(s["replays"]), attempts, result)
    stdout.print(table)
    stdout.print(
        "[dim]ran: callbacks that began, as their isolate reported, in any engine process "
        "(x / y: y attempts journaled, y - x of them cut before they could report); "
        "replays: results returned "
        "from the journal; ✗: failed attempts; ↯: a crash or eviction dynwf injected, "
        "@N in engine process N[/]"
    )
    for warning in r.warnings:
        stdout.print(f"[red]divergence:[/] {escape(warning)}")
    for u in r.unreached:
        stdout.print(
            f"[yellow]never reached:[/] {escape(u)} (no such step call ran; check the name and #N)"
        )
    style = {"complete": "green", "errored": "red", "terminated": "red"}.get(r.status, "yellow")
    stdout.print(f"status: [bold {style}]{r.status}[/]")
    if r.output is not None:
        stdout.print(f"output: {escape(json.dumps(r.output, ensure_ascii=False))}")
    if r.error:
        stdout.print(f"error: [red]{escape(r.error['name'])}: {escape(r.error['message'])}[/]")
    if r.parked:
        stdout.print(f"[red]the tenant's code does not load:[/] {escape(r.parked)}")
    wait = r.waiting
    if wait and not r.parked:
        w: dict[str, Any] = wait
        where = f"{shlex.quote(r.instance)} --workflow {shlex.quote(r.workflow)} --tenant {tenant_arg(r.scope)}"
        if w["kind"] == "event":
            send = f"dynwf instances send-event {where} --type {shlex.quote(str(w['type']))}"
            stdout.print(
                f"waiting for event type {escape(repr(str(w['type'])))} (step {escape(w['step'])}): "
                f"send it with `{escape(send)}`, then `dynwf dev` runs the instance on"
            )
        elif w["kind"] == "paused":
            stdout.print(f"paused: `{escape('dynwf instances resume ' + where)}`")
        else:
            stdout.print(
                f"waiting: {w['kind']} of step {escape(w['step'])} ends later than --max-wait; "
                "pass --skip-sleeps / --skip-retry-delays, or a longer --max-wait"
            )


@app.command(epilog=_EXAMPLES)
def run(
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", metavar="T", help="The tenant to run as (its id).")
    ],
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            "-w",
            metavar="NAME",
            help="Workflow name or binding. Default: the only one.",
        ),
    ] = None,
    params: Annotated[
        str | None,
        typer.Option(
            "--params",
            "-p",
            metavar="JSON|@FILE",
            help="The tenant's params: JSON, or @FILE (@- for stdin).",
        ),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option("--params-file", metavar="FILE", help="Read the params JSON from FILE."),
    ] = None,
    id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Instance id. Default: a new UUID.")
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata",
            metavar="JSON|@FILE",
            help='Dispatcher metadata. Default: {"tenantId": T}.',
        ),
    ] = None,
    crash_at: Annotated[
        list[str] | None,
        typer.Option(
            "--crash-at", metavar="STEP[#N][:WHEN]", help="SIGKILL the engine there (repeatable)."
        ),
    ] = None,
    evict_at: Annotated[
        list[str] | None,
        typer.Option(
            "--evict-at",
            metavar="STEP[#N]",
            help="Evict the tenant's isolate after that step (repeatable).",
        ),
    ] = None,
    hibernate_every_step: Annotated[
        bool,
        typer.Option(
            "--hibernate-every-step", help="End the pass after every step and replay from the top."
        ),
    ] = False,
    skip_sleeps: Annotated[
        bool, typer.Option("--skip-sleeps", help="Sleeps end at once (still hibernating).")
    ] = False,
    skip_retry_delays: Annotated[
        bool, typer.Option("--skip-retry-delays", help="Retries run at once.")
    ] = False,
    max_wait: Annotated[
        str,
        typer.Option(
            "--max-wait",
            metavar="DURATION",
            help="Wait out sleeps and retry delays up to this long.",
        ),
    ] = "30 seconds",
    config: ConfigOption = Path("."),
    persist_to: Annotated[
        Path | None,
        typer.Option(
            "--persist-to", metavar="DIR", help="State directory. Default: <project>/.dynwf."
        ),
    ] = None,
    inline: Annotated[
        bool, typer.Option("--inline", help="Tenant code in the engine process (debuggers).")
    ] = False,
    accept_data_loss: AcceptDataLossOption = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
    allow_divergence: Annotated[
        bool,
        typer.Option(
            "--allow-divergence", help="A replay divergence does not make the exit status 1."
        ),
    ] = False,
    sandbox_mode: SandboxOption = None,
    sandbox_allow: SandboxAllowOption = None,
) -> None:
    """Create one instance for a tenant, drive it through crashes/evictions, print a report."""
    start_sandbox(sandbox_mode, sandbox_allow, inline=inline)
    parsed_params = json_input(params, params_file, "params")
    parsed_meta = json_input(metadata, None, "metadata")

    def progress(n: int, markers: list[dict[str, Any]]) -> None:
        if as_json or n == 1:
            return
        m = markers[-1]
        stderr.print(
            f"[magenta]engine killed[/] at {escape(m['step'])}#{m['count']}:{m['when']}; "
            f"starting engine process {n} to recover from the journal"
        )

    try:
        report = run_workflow(
            config,
            tenant=tenant,
            workflow=workflow,
            params=parsed_params,
            id=id,
            metadata=parsed_meta,
            crash_at=crash_at or [],
            evict_at=evict_at or [],
            hibernate_every_step=hibernate_every_step,
            skip_sleeps=skip_sleeps,
            skip_retry_delays=skip_retry_delays,
            max_wait=max_wait,
            persist_to=persist_to,
            inline=inline,
            accept_data_loss=accept_data_loss,
            allow_divergence=allow_divergence,
            on_process=progress,
            on_progress=None if as_json else _progress_line,
        )
    except ValidationError as exc:
        raise fail(escape(str(exc)), code=EXIT_USAGE) from None
    except ConfigError as exc:
        raise config_failure(exc) from None
    except DynwfError as exc:
        raise fail(escape(str(exc))) from None
    except KeyboardInterrupt:
        raise fail(
            "interrupted; the instance is in the journal (`dynwf inspect`)", code=130
        ) from None
    if as_json:
        print(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        _print_report(report)
        if report.warnings and not allow_divergence:
            stderr.print(
                "[red]exit status 1 for the divergence above[/]: the workflow's code "
                "outside steps is not deterministic; --allow-divergence accepts it"
            )
    raise typer.Exit(report.exit_code)
