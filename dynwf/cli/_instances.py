"""``dynwf instances create|list|pause|resume|terminate|restart|send-event|delete``: instances
from the shell."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from dynwf.cli._app import ConfigOption, app, config_failure, fail, json_input, stdout
from dynwf.cli._inspect import (
    JsonOpt,
    LimitOpt,
    PersistTo,
    StatusOpt,
    TenantOpt,
    WideOpt,
    WorkflowOpt,
    list_instances,
    print_json,
    source_line,
    status_text,
    with_state,
)
from dynwf.client import StateClient, Steered, tenant_arg, tenant_label
from dynwf.config import ConfigFileError, InvalidConfigError, load_config
from dynwf.errors import ValidationError
from dynwf.run import pick_workflow

instances = typer.Typer(
    name="instances",
    help="Create, list, pause, resume, terminate, restart, delete an instance or send it an "
    "event.\n\n"
    "Goes through the running `dynwf dev` when there is one, else writes to the journal; "
    "an instance created or steered in the journal acts on it when `dynwf dev` or "
    "`dynwf run` next opens the journal.",
    epilog="Examples:\n\n"
    "  dynwf instances create --tenant acme --params @order.json\n\n"
    "  dynwf instances list --tenant acme --status waiting\n\n"
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
   "action": "pause" | "resume" | "terminate" | "restart" | "send_event" | "create"
             | "delete",
   "status": str, "previous": str | null}

"status" is the instance's status right after the action ("deleted" after a
delete), "previous" right before it (null for create). A tenant of "" means no tenant created the instance.

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
}
_RESTART_HELP = (
    "Restart an instance with its original params: its steps, buffered events and timers "
    "are wiped and it runs from the top. With --from STEP[#N] it runs again from that step "
    "instead: the steps journaled before it keep their results (N: the Nth step of that "
    "name, default 1; --from-type narrows to do, sleep or waitForEvent). An unknown step "
    "is an error that changes nothing."
)
_RESTART_EXAMPLES = """\
Examples:

  dynwf instances restart order-17

  dynwf instances restart order-17 --from charge

  dynwf instances restart order-17 --from 'poll#3' --from-type do --json

"""


_NOT_PAUSED = ("queued", "running", "waiting")


def _report(client: StateClient, done: Steered, what: str, as_json: bool) -> None:
    if done.action == "resume" and done.previous not in ("paused", "waitingForPause", None):
        # resume is a no-op unless paused: say what the instance is, never "resumed".
        again = f"`dynwf instances restart {_flags(done)}` runs it again"
        if done.status not in _NOT_PAUSED:
            raise fail(
                f"instance {escape(repr(done.id))} is {escape(done.status)}, not paused: "
                f"nothing to resume ({escape(again)})"
            )
        if as_json:
            print_json(done.as_json())
            return
        stdout.print(source_line(client))
        stdout.print(
            f"instance {escape(repr(done.id))} is not paused: nothing to resume; "
            f"status {status_text(done.status)}"
        )
        return
    if as_json:
        print_json(done.as_json())
        return
    tenant = f", tenant {escape(repr(tenant_label(done.tenant)))}" if done.tenant else ""
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


def _flags(done: Steered) -> str:
    return (
        f"{shlex.quote(done.id)} --workflow {shlex.quote(done.workflow)} "
        f"--tenant {tenant_arg(done.tenant)}"
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


def parse_from(value: str, kind: str | None) -> dict[str, Any]:
    """``STEP`` or ``STEP#N`` (and a --from-type) as restart's ``from``."""
    name, sep, count = value.rpartition("#")
    if not sep or not count.isdigit():
        name, count = value, "1"
    if not name or int(count) < 1:
        raise fail(
            f"--from {escape(repr(value))} is not STEP or STEP#N (N >= 1), e.g. --from charge#2",
            code=2,
        )
    start: dict[str, Any] = {"name": name, "count": int(count)}
    if kind is not None:
        start["type"] = kind
    return start


@instances.command("restart", help=_RESTART_HELP, epilog=_RESTART_EXAMPLES + _JSON_SHAPE)
def restart(
    id: IdArg,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="STEP[#N]",
            help="Run again from this step, keeping the steps before it.",
        ),
    ] = None,
    from_type: Annotated[
        str | None,
        typer.Option(
            "--from-type",
            metavar="TYPE",
            help="The --from step's type: do, sleep or waitForEvent. Default: any.",
        ),
    ] = None,
    workflow: WorkflowOpt = None,
    tenant: TenantOpt = None,
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
) -> None:
    """Restart an instance (see _RESTART_HELP)."""
    if from_type is not None and from_ is None:
        raise fail("--from-type goes with --from STEP", code=2)
    if from_type is not None and from_type not in ("do", "sleep", "waitForEvent"):
        raise fail(
            f"--from-type {escape(repr(from_type))} is not one of do, sleep, waitForEvent",
            code=2,
        )
    start = parse_from(from_, from_type) if from_ is not None else None

    async def steer(client: StateClient) -> Steered:
        return await client.restart(id, workflow=workflow, tenant=tenant, start=start)

    client, done = with_state(persist_to, steer)
    what = "restarted" if start is None else f"restarted from step {escape(repr(from_))}"
    _report(client, done, what, as_json)


_SEND_HELP = (
    "Send an event to an instance. It is buffered durably until a "
    "step.wait_for_event of that type takes it (oldest first, one event per waiter)."
)
_SEND_EXAMPLES = """\
Examples:

  dynwf instances send-event order-17 --type approved --payload '{"by": "ann"}'

  dynwf instances send-event order-17 --type approved --payload @decision.json

  dynwf instances send-event order-17 --type cancel --tenant acme

"""


@instances.command("send-event", help=_SEND_HELP, epilog=_SEND_EXAMPLES + _JSON_SHAPE)
def send_event(
    id: IdArg,
    type_: Annotated[
        str | None,
        typer.Option("--type", metavar="TYPE", help="The event type (required)."),
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option(
            "--payload",
            metavar="JSON|@FILE",
            help="The event payload: JSON, or @FILE (@- for stdin). Default: {}.",
        ),
    ] = None,
    payload_file: Annotated[
        Path | None,
        typer.Option("--payload-file", metavar="FILE", help="Read the payload JSON from FILE."),
    ] = None,
    workflow: WorkflowOpt = None,
    tenant: TenantOpt = None,
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
) -> None:
    """Send an event (see _SEND_HELP)."""
    if type_ is None:
        raise fail(
            "send-event needs --type TYPE, the event type a wait_for_event waits for", code=2
        )
    value: Any = json_input(payload, payload_file, "payload")
    if payload is None and payload_file is None:
        value = {}

    async def send(client: StateClient) -> Steered:
        return await client.send_event(id, type_, value, workflow=workflow, tenant=tenant)

    client, done = with_state(persist_to, send)
    _report(client, done, f"sent event {escape(repr(type_))} to", as_json)


_DELETE_HELP = (
    "Delete an instance: a running one is stopped first; it then leaves every listing and "
    "lookup, is never resumed, and its id is free for a new instance. Its facts stay in "
    "the journal, marked deleted."
)
_DELETE_EXAMPLES = """\
Examples:

  dynwf instances delete order-17

  dynwf instances delete order-17 --workflow orders --tenant acme --json

"""


@instances.command("delete", help=_DELETE_HELP, epilog=_DELETE_EXAMPLES + _JSON_SHAPE)
def delete(
    id: IdArg,
    workflow: WorkflowOpt = None,
    tenant: TenantOpt = None,
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete an instance (see _DELETE_HELP)."""

    async def delete_(client: StateClient) -> Steered:
        return await client.delete(id, workflow=workflow, tenant=tenant)

    client, done = with_state(persist_to, delete_)
    if as_json:
        print_json(done.as_json())
        return
    tenant_ = f", tenant {escape(repr(tenant_label(done.tenant)))}" if done.tenant else ""
    stdout.print(source_line(client))
    stdout.print(
        f"[bold green]✔[/] deleted instance {escape(repr(done.id))} "
        f"(workflow {escape(repr(done.workflow))}{tenant_}; it was "
        f"{status_text(done.previous or 'unknown')})"
    )


# -- create and list ---------------------------------------------------------------------
_CREATE_HELP = (
    "Create an instance for a tenant, as the dispatcher's wrapped binding does: the "
    "params ride in the envelope with the tenant's metadata, and the id is scoped to "
    "the tenant.\n\n"
    "Through a running `dynwf dev` it starts at once; with no dev server it is recorded "
    "in the journal and starts when `dynwf dev` next opens it."
)
_CREATE_EXAMPLES = """\
Examples:

  dynwf instances create --tenant acme --params '{"amount": 25, "currency": "EUR"}'

  dynwf instances create -t acme --params @order.json --id order-17

  dynwf instances create -t acme --params-file order.json --workflow orders --json

  dynwf instances create -t acme --retention '{"successRetention": "1 day"}'

"""


@instances.command("create", help=_CREATE_HELP, epilog=_CREATE_EXAMPLES + _JSON_SHAPE)
def create(
    tenant: Annotated[
        str, typer.Option("--tenant", "-t", metavar="T", help="The tenant (its id).")
    ],
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
    keep: Annotated[
        str | None,
        typer.Option(
            "--retention",
            metavar="JSON",
            help='How long it is kept once finished, e.g. \'{"successRetention": "1 day", '
            '"errorRetention": "7 days"}\'. Default: kept.',
        ),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            "-w",
            metavar="NAME",
            help="Workflow name or binding. Default: the project's only one.",
        ),
    ] = None,
    config: ConfigOption = Path("."),
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an instance (see _CREATE_HELP)."""
    value = json_input(params, params_file, "params")
    meta = json_input(metadata, None, "metadata")
    retention = json_input(keep, None, "retention")
    try:
        wf = pick_workflow(load_config(config), workflow)
    except (ConfigFileError, InvalidConfigError) as exc:
        raise config_failure(exc) from None
    except ValidationError as exc:
        raise fail(escape(str(exc)), code=2) from None

    async def make(client: StateClient) -> Steered:
        return await client.create(
            wf.name,
            metadata=meta if meta is not None else {"tenantId": tenant},
            params=value,
            id=id,
            retention=retention,
        )

    client, done = with_state(persist_to, make)
    if as_json:
        print_json(done.as_json())
        return
    stdout.print(source_line(client))
    stdout.print(
        f"[bold green]✔[/] created instance {escape(repr(done.id))} (workflow "
        f"{escape(repr(done.workflow))}, tenant {escape(repr(tenant_label(done.tenant)))}); "
        f"status now {status_text(done.status)}"
    )
    look = f"dynwf inspect {shlex.quote(done.id)} --tenant {tenant_arg(done.tenant)}"
    if client.kind == "journal":
        stdout.print(
            "[dim]recorded in the journal: `dynwf dev` runs it when it next opens the "
            f"journal; `{escape(look)}` shows it[/]"
        )
    else:
        stdout.print(f"[dim]`{escape(look)}` follows it[/]")


_LIST_EXAMPLES = """\
Examples:

  dynwf instances list

  dynwf instances list -t acme -s waiting -n 10 --json

The same table as `dynwf inspect` without an ID (see its --help for the --json
shape). Exit status: 0 shown, 1 failed, 2 bad command line.
"""


@instances.command(
    "list",
    help="List instances, newest first: id, tenant, workflow, status, created, steps.",
    epilog=_LIST_EXAMPLES,
)
def list_(
    workflow: WorkflowOpt = None,
    tenant: TenantOpt = None,
    status: StatusOpt = None,
    limit: LimitOpt = None,
    persist_to: PersistTo = None,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """List instances (same as `dynwf inspect` without ID)."""
    list_instances(workflow, tenant, status, limit, persist_to, as_json, wide)
