"""``dynwf dev``: the local engine, the dispatcher over HTTP, the explorer API, hot reload."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from dynwf.cli._app import app, config_failure, fail, stderr
from dynwf.client import tenant_label
from dynwf.config import ConfigFileError, InvalidConfigError
from dynwf.engine import StepEvent, TimeControl
from dynwf.errors import DynwfError
from dynwf.project import Project, ReloadResult
from dynwf.server import serve_project

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


def _step_line(kind: str, payload: Any) -> None:
    if kind == "step":
        e: StepEvent = payload
        tenant = tenant_label(e.scope)
        mark = "[green]ok[/]" if e.ok else f"[red]{escape(e.error['name'] if e.error else 'failed')}[/]"
        stderr.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] step  {escape(tenant)}  {escape(e.instance)}  "
            f"{escape(e.step)}  attempt {e.attempt}  {e.duration_ms} ms  {mark}"
        )
    elif kind == "warning":
        stderr.print(f"[yellow]warning:[/] {escape(str(payload))}")
    elif kind == "pass":
        st, outcome = payload
        if outcome in ("complete", "errored"):
            style = "green" if outcome == "complete" else "red"
            stderr.print(f"[dim]{time.strftime('%H:%M:%S')}[/] [{style}]{outcome}[/]  "
                         f"{escape(tenant_label(st.scope))}  {escape(st.id)}")


def _reload_line(r: ReloadResult) -> None:
    if r.dispatcher_error:
        stderr.print(f"[red]reload failed (dispatcher keeps its last good version):[/] "
                     f"{escape(r.dispatcher_error)}")
    for id, error in r.workers.items():
        if error:
            stderr.print(f"[red]reload failed for {escape(id)} (last good version keeps "
                         f"serving, its instances wait):[/] {escape(error)}")
        else:
            stderr.print(f"[cyan]reloaded[/] {escape(id)} in {r.seconds * 1000:.0f} ms")
    if r.unparked:
        stderr.print(f"[cyan]{r.unparked} waiting instance(s) run again[/]")


class _RequestLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        stderr.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(record.getMessage())}")


@app.command(epilog=_EXAMPLES)
def dev(
    config: Annotated[Path, typer.Option("--config", "-c", metavar="FILE|DIR",
                                         help="wrangler.toml/.jsonc/.json or its directory.")] = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=0, max=65535)] = 8787,
    persist_to: Annotated[Path | None, typer.Option("--persist-to", metavar="DIR",
                                                    help="State directory. Default: <project>/.dynwf "
                                                    "(or $DYNWF_PERSIST_TO).")] = None,
    inline: Annotated[bool, typer.Option("--inline", help="Run tenant code in this process "
                                         "instead of isolates (for debuggers).")] = False,
    skip_sleeps: Annotated[bool, typer.Option("--skip-sleeps", help="Sleeps end at once (still hibernating).")] = False,
    skip_retry_delays: Annotated[bool, typer.Option("--skip-retry-delays", help="Retries run at once.")] = False,
    no_reload: Annotated[bool, typer.Option("--no-reload", help="Do not watch files.")] = False,
    accept_data_loss: Annotated[bool, typer.Option(
        "--accept-data-loss", help="Open a journal that lacks facts its last writer committed "
        "(a lost .wal) instead of refusing it.")] = False,
) -> None:
    """Run the project locally: engine + dispatcher over HTTP + explorer API + hot reload."""
    try:
        project = Project.load(
            config, persist_to=persist_to, isolation="inline" if inline else "process",
            time=TimeControl(skip_sleeps=skip_sleeps, skip_retry_delays=skip_retry_delays),
            accept_data_loss=accept_data_loss,
        )
    except (ConfigFileError, InvalidConfigError) as exc:
        raise config_failure(exc) from None
    project.engine.listeners.append(_step_line)
    server_log = logging.getLogger("dynwf.server")
    server_log.addHandler(_RequestLog())
    server_log.setLevel(logging.INFO)

    def ready(url: str) -> None:
        names = ", ".join(w.name for w in project.config.workflows)
        stderr.print(f"[bold green]dynwf dev[/] serving [bold]{url}[/]  explorer {escape(url)}/cdn-cgi/explorer/  "
                     f"workflows: {names}  state: {project.state_dir}  (Ctrl-C to stop)")

    try:
        asyncio.run(serve_project(project, host=host, port=port, reload=not no_reload,
                                  on_ready=ready, on_reload=_reload_line))
    except DynwfError as exc:
        raise fail(escape(str(exc))) from None
    except KeyboardInterrupt:
        pass
    stderr.print("[dim]stopped; unfinished instances resume on the next start[/]")
