"""``dynwf dev``: the local engine, the dispatcher over HTTP, the explorer API, hot reload."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from dynwf.cli._app import (
    AcceptDataLossOption,
    ConfigOption,
    SandboxAllowOption,
    SandboxOption,
    app,
    config_failure,
    fail,
    start_sandbox,
    stderr,
)
from dynwf.cli._inspect import duration_text
from dynwf.client import tenant_label
from dynwf.config import ConfigFileError, InvalidConfigError
from dynwf.engine import InstanceState, StatusChange, StepEvent, TimeControl
from dynwf.errors import DynwfError
from dynwf.project import Project, ReloadResult
from dynwf.server import serve_project

EXPLORER_PATH = "/cdn-cgi/explorer"

_EXAMPLES = """\
Examples:

  dynwf dev                                   # wrangler.toml here, http://127.0.0.1:8787

  dynwf dev --port 8790 --persist-to /tmp/state

  dynwf dev --skip-sleeps --skip-retry-delays # a day-long workflow in seconds

  dynwf dev --inline                          # tenant code in this process: breakpoints work

While it runs, `npx wrangler workflows instances list <workflow> --local --port 8787`
and `dynwf inspect` read it. Ctrl-C stops it with nothing lost; started again, it
resumes every unfinished instance.

Exit status: 0 after Ctrl-C, 1 a bad config / dispatcher / port in use, a journal that
is in use, damaged or missing data, or a journal commit that failed (the engine stops at
once; started again, it resumes from what the journal holds), 2 usage.
"""


def _error_text(error: Any) -> str:
    if not error:
        return "failed"
    name, message = error.get("name") or "Error", error.get("message") or ""
    return f"{name}: {message}" if message else str(name)


def _who(st: InstanceState) -> str:
    return f"{escape(tenant_label(st.scope))}  {escape(st.id)}"


def _clock(ms: int | None) -> str:
    if ms is None:
        return "?"
    left = ms - int(time.time() * 1000)
    at = time.strftime("%H:%M:%S", time.localtime(ms / 1000))
    return f"{at} (in {duration_text(left)})" if left > 0 else f"{at} (due now)"


def _waits(st: InstanceState) -> str:
    """What a suspended instance waits for, in words."""
    parts = []
    for s in st.steps.values():
        if s.done:
            continue
        if s.kind == "sleep":
            parts.append(f"sleeping in {escape(s.name)} until {_clock(s.wake_at)}")
        elif s.kind == "waitForEvent":
            parts.append(
                f"waiting for event {escape(repr(s.event_type))} in {escape(s.name)} "
                f"until {_clock(s.wake_at)}"
            )
        elif s.wake_at is not None:
            parts.append(f"retrying {escape(s.name)} at {_clock(s.wake_at)}")
    return "; ".join(parts) or "waiting"


# A status change worth a line of its own, by the event that caused it.
_LIFECYCLE = {
    "pause": "paused",
    "resume": "resumed",
    "terminate": "terminated",
    "restart": "restarted",
}


# Control characters in a name the tenant chose (a step name) never reach the terminal raw.
_PRINTABLE = {c: "?" for c in [*range(0x20), 0x7F]}


def _step_ok(e: StepEvent) -> None:
    """The line of a step attempt that succeeded, the most frequent line by far, written
    straight to the console's file: rich's markup and rendering cost about four times
    this write (0.36 against 0.09 ms a line, measured on the shared 2-core VM), a large
    part of a no-op step's cost in ``dynwf dev``."""
    color = stderr.is_terminal and not stderr.no_color
    dim, green, end = ("\x1b[2m", "\x1b[32m", "\x1b[0m") if color else ("", "", "")
    stderr.file.write(
        f"{dim}{time.strftime('%H:%M:%S')}{end} step  "
        + f"{tenant_label(e.scope)}  {e.instance}  {e.step}".translate(_PRINTABLE)
        + f"  attempt {e.attempt}  {e.duration_ms} ms  {green}ok{end}\n"
    )


def _step_line(kind: str, payload: Any) -> None:
    if kind == "step" and payload.ok:
        _step_ok(payload)
        return
    now = f"[dim]{time.strftime('%H:%M:%S')}[/]"
    if kind == "step":
        e: StepEvent = payload
        tenant = tenant_label(e.scope)
        mark = "[green]ok[/]" if e.ok else f"[red]{escape(_error_text(e.error))}[/]"
        stderr.print(
            f"{now} step  {escape(tenant)}  {escape(e.instance)}  "
            f"{escape(e.step)}  attempt {e.attempt}  {e.duration_ms} ms  {mark}"
        )
    elif kind == "warning":
        stderr.print(f"[yellow]warning:[/] {escape(str(payload))}")
    elif kind == "pass":
        st, outcome = payload
        if outcome == "complete":
            stderr.print(f"{now} [green]complete[/]  {_who(st)}")
        elif outcome == "errored":
            stderr.print(
                f"{now} [red]errored[/]  {_who(st)}  [red]{escape(_error_text(st.error))}[/]"
            )
        elif outcome == "suspended" and st.status.value == "waiting":
            stderr.print(f"{now} [blue]waiting[/]  {_who(st)}  {_waits(st)}")
    elif kind == "status":
        change: StatusChange = payload
        st = change.instance
        if change.event in _LIFECYCLE:
            stderr.print(
                f"{now} [magenta]{_LIFECYCLE[change.event]}[/]  {_who(st)}  "
                f"[dim]({change.old} -> {change.new})[/]"
            )
        elif change.event == "wake" and change.old == "waiting":
            stderr.print(f"{now} [cyan]woke[/]  {_who(st)}")
    elif kind == "event":
        st, type_ = payload
        stderr.print(f"{now} [cyan]event[/]  {_who(st)}  {escape(repr(type_))} received")
    elif kind == "parked":
        st, reason = payload
        stderr.print(
            f"{now} [red]parked[/]  {_who(st)}  code will not load ({escape(reason)}); "
            "it runs again once a reload fixes it"
        )
    elif kind == "recovered":
        states: list[InstanceState] = payload
        counts = Counter(st.status.value for st in states)
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        stderr.print(
            f"{now} [cyan]recovered[/] {len(states)} unfinished instance(s) from the "
            f"journal: {summary}"
        )
        for st in states[:_RECOVERED_SHOWN]:
            what = _waits(st) if st.status.value == "waiting" else st.status.value
            stderr.print(f"{now}   {_who(st)}  {what}")
        if len(states) > _RECOVERED_SHOWN:
            stderr.print(f"{now}   ... and {len(states) - _RECOVERED_SHOWN} more (`dynwf inspect`)")


_RECOVERED_SHOWN = 10


def _reload_line(r: ReloadResult) -> None:
    if r.dispatcher_error:
        stderr.print(
            f"[red]reload failed (dispatcher keeps its last good version):[/] "
            f"{escape(r.dispatcher_error)}"
        )
    for id, error in r.workers.items():
        if error:
            stderr.print(
                f"[red]reload failed for {escape(id)} (last good version keeps "
                f"serving, its instances wait):[/] {escape(error)}"
            )
        else:
            stderr.print(f"[cyan]reloaded[/] {escape(id)} in {r.seconds * 1000:.0f} ms")
    if r.unparked:
        stderr.print(f"[cyan]{r.unparked} waiting instance(s) run again[/]")


class _RequestLog(logging.Handler):
    """Requests to the tenant's fetch, one line each; the explorer API's own traffic
    (`dynwf inspect`, wrangler, the dashboard) only when it fails on the server."""

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if (
            record.levelno < logging.WARNING
            and len(args) >= 3
            and str(args[1]).startswith(EXPLORER_PATH)
            and isinstance(args[2], int)
            and args[2] < 500
        ):
            return
        stderr.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(record.getMessage())}")


@app.command(epilog=_EXAMPLES)
def dev(
    config: ConfigOption = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8787,
    persist_to: Annotated[
        Path | None,
        typer.Option(
            "--persist-to",
            metavar="DIR",
            help="State directory. Default: <project>/.dynwf (or $DYNWF_PERSIST_TO).",
        ),
    ] = None,
    inline: Annotated[
        bool,
        typer.Option(
            "--inline", help="Run tenant code in this process instead of isolates (for debuggers)."
        ),
    ] = False,
    skip_sleeps: Annotated[
        bool,
        typer.Option(
            "--skip-sleeps",
            help="Sleeps end at once (still hibernating), also those already journaled.",
        ),
    ] = False,
    skip_retry_delays: Annotated[
        bool,
        typer.Option(
            "--skip-retry-delays", help="Retries run at once, also those already journaled."
        ),
    ] = False,
    no_reload: Annotated[bool, typer.Option("--no-reload", help="Do not watch files.")] = False,
    accept_data_loss: AcceptDataLossOption = False,
    sandbox_mode: SandboxOption = None,
    sandbox_allow: SandboxAllowOption = None,
) -> None:
    """Run the project locally: engine + dispatcher over HTTP + explorer API + hot reload."""
    start_sandbox(sandbox_mode, sandbox_allow, inline=inline)
    try:
        project = Project.load(
            config,
            persist_to=persist_to,
            isolation="inline" if inline else "process",
            time=TimeControl(skip_sleeps=skip_sleeps, skip_retry_delays=skip_retry_delays),
            accept_data_loss=accept_data_loss,
        )
    except (ConfigFileError, InvalidConfigError) as exc:
        raise config_failure(exc) from None
    project.engine.listeners.append(_step_line)
    server_log = logging.getLogger("dynwf.server")
    server_log.addHandler(_RequestLog())
    server_log.setLevel(logging.INFO)
    outbound_log = logging.getLogger("dynwf.outbound")  # each tenant fetch and its route
    outbound_log.addHandler(_RequestLog())
    outbound_log.setLevel(logging.INFO)

    def ready(url: str) -> None:
        names = ", ".join(w.name for w in project.config.workflows)
        stderr.print(
            f"[bold green]dynwf dev[/] serving [bold]{url}[/]  explorer {escape(url)}/cdn-cgi/explorer/  "
            f"workflows: {names}  state: {project.state_dir}  (Ctrl-C to stop)"
        )

    try:
        asyncio.run(
            serve_project(
                project,
                host=host,
                port=port,
                reload=not no_reload,
                on_ready=ready,
                on_reload=_reload_line,
            )
        )
    except DynwfError as exc:
        raise fail(escape(str(exc))) from None
    except KeyboardInterrupt:
        pass
    stderr.print("[dim]stopped; unfinished instances resume on the next start[/]")
