"""``workflows[].schedules``: the shape wrangler accepts, cron syntax, and what a schedule can reach.

wrangler (workers-sdk#13467, #14150) accepts a non-empty cron string or a non-empty
array of non-empty strings, and refuses schedules on a workflow bound to another
Worker's ``script_name``; the cron syntax itself is checked by Cloudflare's parser at
deploy (``dynwf.config._cron`` follows it). A scheduled instance is created by the
platform with no params, so a dispatcher's dynamic workflow, which needs the
``__dispatcherMetadata`` envelope in its params to find the tenant, fails every run.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from dynwf.config._cron import CronError, parse_cron
from dynwf.config._rules import Findings
from dynwf.config._source import Location, Node, js_json

_FACTORY = "create_dynamic_workflow_entrypoint"
_FACTORY_DEFAULT_CLASS = "DynamicWorkflow"


def schedules_of(entry: Node) -> tuple[str, ...]:
    """The cron expressions of a workflow entry that passed validation."""
    node = entry.get("schedules")
    if node is None:
        return ()
    if isinstance(node.value, str):
        return (node.value,)
    return tuple(item.value for item in node.items if isinstance(item.value, str))


def check_schedules(root: Node, config_path: Path, findings: Findings) -> None:
    """Every rule above, for the top level and each ``env.<name>``."""
    scopes: list[tuple[str, Node]] = [("", root)]
    envs = root.get("env")
    if envs is not None and envs.is_object():
        scopes += [(f"env.{name}.", env) for name, env in envs.children.items() if env.is_object()]
    dynamic: set[str] | None = None
    for prefix, scope in scopes:
        workflows = scope.get("workflows")
        if workflows is None or not workflows.is_array():
            continue
        for index, entry in enumerate(workflows.items):
            node = entry.get("schedules") if entry.is_object() else None
            if node is None:
                continue
            field = f"{prefix}workflows[{index}]"
            crons = _check_shape(node, field, js_json(entry.value), findings)
            for cron, at in crons:
                _check_cron(cron, at, field, findings)
            if not crons:
                continue
            script = entry.get("script_name")
            if script is not None:
                findings.error(
                    "wrangler.workflows.schedules-script-name",
                    f'"{field}" has "schedules" but references external script '
                    f"{js_json(script.value)}: put the schedules on the workflow in the "
                    "Worker that defines it.",
                    node.location,
                )
                continue
            class_name = entry.text("class_name")
            if class_name is None:
                continue
            if dynamic is None:
                main = scope.get("main") or root.get("main")
                dynamic = _dynamic_classes(main, config_path)
            if class_name in dynamic:
                findings.error(
                    "dynwf.workflows.schedule-no-envelope",
                    f'"{field}" class_name "{class_name}" is the dispatcher\'s dynamic workflow '
                    f"({_FACTORY}), but a scheduled instance is created with no params, so "
                    "it has no __dispatcherMetadata envelope: every scheduled run would fail "
                    "with MissingDispatcherMetadataError. Put the schedule on a workflow of "
                    "your own that creates the tenants' instances through their wrapped "
                    "bindings.",
                    node.location,
                )


def _check_shape(
    node: Node, field: str, whole: str, findings: Findings
) -> list[tuple[str, Location]]:
    """The cron strings with their locations, after wrangler's shape rule."""
    if isinstance(node.value, str) and node.value != "":
        return [(node.value, node.location)]
    items = node.items if node.is_array() else ()
    if items and all(isinstance(i.value, str) and i.value != "" for i in items):
        return [(str(i.value), i.location) for i in items]
    findings.error(
        "wrangler.workflows.schedules",
        f'"{field}" bindings should, optionally, have a "schedules" field that is a '
        f"non-empty cron expression string or a non-empty array of them, but got {whole}.",
        node.location,
    )
    return []


def _check_cron(cron: str, at: Location, field: str, findings: Findings) -> None:
    try:
        parsed = parse_cron(cron)
    except CronError as exc:
        findings.error(
            "dynwf.workflows.schedule-cron",
            f'"{field}.schedules" {json.dumps(cron)} is not a cron expression Cloudflare '
            f"accepts: {exc.reason}.",
            at,
        )
        return
    if parsed.next_after(0) is None:
        findings.error(
            "dynwf.workflows.schedule-never-fires",
            f'"{field}.schedules" {json.dumps(cron)} never fires: no month it names has that '
            "day; Cloudflare's local engine refuses it (no next occurrence).",
            at,
        )


def _dynamic_classes(main: Node | None, config_path: Path) -> set[str]:
    """Names ``main`` binds to ``create_dynamic_workflow_entrypoint(...)`` and the class
    names it passes (AST only: the import probe in ``_checks`` reports a broken main)."""
    if main is None or not isinstance(main.value, str) or not main.value.endswith(".py"):
        return set()
    path = (config_path.parent / main.value).resolve()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        func = node.value.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called != _FACTORY:
            continue
        names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        given = [k.value for k in node.value.keywords if k.arg == "class_name"]
        if not given:
            names.add(_FACTORY_DEFAULT_CLASS)
        elif isinstance(given[0], ast.Constant) and isinstance(given[0].value, str):
            names.add(given[0].value)
    return names
