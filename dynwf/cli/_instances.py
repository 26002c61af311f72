"""``dynwf instances pause|resume|terminate|restart|send-event``: steer an instance from the shell."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape

from dynwf.cli._app import app, fail, stdout
from dynwf.cli._inspect import (
    JsonOpt,
    PersistTo,
    TenantOpt,
    WorkflowOpt,
    print_json,
    source_line,
    status_text,
    with_state,
)
from dynwf.client import StateClient, Steered

instances = typer.Typer(
    name="instances",
    help="Pause, resume, terminate, restart an instance or send it an event.\n\n"
    "Goes through the running `dynwf dev` when there is one, else writes to the journal; "
    "an instance steered in the journal acts on it when `dynwf dev` or `dynwf run` next "
    "opens the journal.",
    epilog="Examples:\n\n"
    "  dynwf instances pause order-17\n\n"
    "  dynwf instances resume order-17 --tenant acme\n\n"
    "  dynwf instances send-event exp-1 --type decision --payload '{\"approved\": true}'\n\n"
    "  dynwf instances restart order-17 --json\n\n"
    "Each subcommand's --help has its options and its --json shape. Exit status: 0 done, "
    "1 not found / not allowed in the instance's state, 2 usage.",
    no_args_is_help=True,
)
app.add_typer(instances, name="instances")

IdArg = Annotated[str, typer.Argument(metavar="ID", help="The instance id.")]

_JSON_SHAPE = """\
With --json, stdout is one object:

  {"id": str, "workflow": str, "tenant": str,
   "action": "pause" | "resume" | "terminate" | "restart" | "send_event",
   "status": str}

"status" is the instance's status right after the action. A tenant of ""
means no tenant created the instance.

Exit status: 0 done, 1 failed (no such instance, an ambiguous id, a status
that does not allow it, journal in use, ...), 2 bad command line (no
--type, a payload that is not JSON, an invalid event type, ...).
Errors go to stderr as one line, also with --json.
"""

_STEERING = {
    "pause": (
        "Pause an instance: it stops at its next step boundary; sleeps, retry delays and "
        "waits keep their remaining time for the resume.",
        "paused",
    ),
    "resume": ("Resume a paused instance (a no-op in any other status).", "resumed"),
    "terminate": (
        "Terminate an instance for good (it can only be restarted). Fails on an instance "
        "that is complete, errored or terminated.",
        "terminated",
    ),
    "restart": (
        "Restart an instance from scratch with its original params: its steps, buffered "
        "events and timers are wiped.",
        "restarted",
    ),
}


def _report(client: StateClient, done: Steered, what: str, as_json: bool) -> None:
    if as_json:
        print_json(done.as_json())
        return
    tenant = f", tenant {escape(repr(done.tenant))}" if done.tenant else ""
    stdout.print(source_line(client))
    stdout.print(
        f"[bold green]✔[/] {what} instance {escape(repr(done.id))} "
        f"(workflow {escape(repr(done.workflow))}{tenant}); "
        f"status now {status_text(done.status)}"
    )
    if client.kind == "journal" and done.action in ("resume", "restart", "send_event"):
        # Nothing runs instances while no dev server holds the journal.
        stdout.print(
            "[dim]recorded in the journal: the instance acts on it when `dynwf dev` or "
            "`dynwf run` next opens the journal[/]"
        )


def _steering_command(action: str, help: str, what: str) -> Callable[..., None]:
    def command(
        id: IdArg,
        workflow: WorkflowOpt = None,
        tenant: TenantOpt = None,
        persist_to: PersistTo = None,
        as_json: JsonOpt = False,
    ) -> None:
        async def steer(client: StateClient) -> Steered:
            done: Steered = await getattr(client, action)(id, workflow=workflow, tenant=tenant)
            return done

        client, done = with_state(persist_to, steer)
        _report(client, done, what, as_json)

    examples = (
        f"Examples:\n\n  dynwf instances {action} order-17\n\n"
        f"  dynwf instances {action} order-17 --workflow orders --tenant acme --json\n\n"
    )
    command.__doc__ = help
    instances.command(action, help=help, epilog=examples + _JSON_SHAPE)(command)
    return command


for _action, (_help, _what) in _STEERING.items():
    _steering_command(_action, _help, _what)

_SEND_HELP = (
    "Send an event to an instance. It is buffered durably until a "
    "step.wait_for_event of that type takes it (oldest first, one event per waiter)."
)
_SEND_EXAMPLES = """\
Examples:

  dynwf instances send-event order-17 --type approved -p '{"by": "ann"}'

  dynwf instances send-event order-17 --type cancel --tenant acme

"""


@instances.command("send-event", help=_SEND_HELP, epilog=_SEND_EXAMPLES + _JSON_SHAPE)
def send_event(
    id: IdArg,
    type_: Annotated[
        str | None,
        typer.Option("--type", "-t", metavar="T", help="The event type (required)."),
    ] = None,
    payload: Annotated[
        str,
        typer.Option("--payload", "-p", metavar="JSON", help="The event payload, as JSON."),
    ] = "{}",
    workflow: WorkflowOpt = None,
    tenant: TenantOpt = None,
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
) -> None:
    """Send an event (see _SEND_HELP)."""
    if type_ is None:
        raise fail("send-event needs --type T, the event type a wait_for_event waits for", code=2)
    try:
        value: Any = json.loads(payload)
    except ValueError as exc:
        raise fail(
            f"--payload is not JSON ({escape(str(exc))}): quote it for the shell, "
            """e.g. --payload '{"by": "ann"}'""",
            code=2,
        ) from None

    async def send(client: StateClient) -> Steered:
        return await client.send_event(id, type_, value, workflow=workflow, tenant=tenant)

    client, done = with_state(persist_to, send)
    _report(client, done, f"sent event {escape(repr(type_))} to", as_json)
