"""wrangler's own rules for the fields dynwf reads, with wrangler's message text.

Mirrors wrangler 4.86's ``normalizeAndValidateConfig``: the checks, their order and
their wording (including its ``JSON.stringify`` of the offending value) are wrangler's,
so a config dynwf accepts deploys and one it rejects fails the same way there. Unlike
wrangler, which only looks at the ``--env`` it was given, every ``env.<name>`` is checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from dynwf.config._model import Diagnostic, Severity
from dynwf.config._source import Location, Node, is_js_integer, js_json, js_typeof

WORKFLOW_NAME = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9-_]*$")
MAX_WORKFLOW_NAME_LENGTH = 64
PRODUCTION_MAX_STEPS = 25_000
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WORKER_NAME = re.compile(r"^$|^[a-z0-9_][a-z0-9-_]*$")
_WORKFLOW_NAME_FORMAT = (
    "Workflow names must be 1-64 characters long, start with a letter, number, or "
    "underscore, and may only contain letters, numbers, underscores, or hyphens."
)
_WORKFLOW_FIELDS = (
    "binding",
    "name",
    "class_name",
    "script_name",
    "remote",
    "limits",
    "concurrency",
    "schedules",
)

# wrangler's friendlyBindingNames, in its order: the order decides how a clash between
# kinds is worded ("A assigned to KV Namespace and Workflow bindings.").
BINDING_KINDS = {
    "data_blobs": "Data Blob",
    "durable_objects": "Durable Object",
    "kv_namespaces": "KV Namespace",
    "send_email": "Send Email",
    "queues": "Queue",
    "d1_databases": "D1 Database",
    "vectorize": "Vectorize Index",
    "ai_search_namespaces": "AI Search Namespace",
    "ai_search": "AI Search Instance",
    "hyperdrive": "Hyperdrive Config",
    "r2_buckets": "R2 Bucket",
    "logfwdr": "logfwdr",
    "services": "Worker",
    "analytics_engine_datasets": "Analytics Engine Dataset",
    "text_blobs": "Text Blob",
    "browser": "Browser Run",
    "ai": "AI",
    "images": "Images",
    "stream": "Stream",
    "media": "Media",
    "version_metadata": "Worker Version Metadata",
    "unsafe": "Unsafe Metadata",
    "vars": "Environment Variable",
    "wasm_modules": "Wasm Module",
    "dispatch_namespaces": "Dispatch Namespace",
    "mtls_certificates": "mTLS Certificate",
    "workflows": "Workflow",
    "pipelines": "Pipeline",
    "secrets_store_secrets": "Secrets Store Secret",
    "artifacts": "Artifacts",
    "ratelimits": "Rate Limit",
    "assets": "Assets",
    "unsafe_hello_world": "Hello World",
    "flagship": "Flagship",
    "worker_loaders": "Worker Loader",
    "vpc_services": "VPC Service",
    "vpc_networks": "VPC Network",
}

# Fields each env must repeat (wrangler's notInheritable ones), in wrangler's order.
_NOT_INHERITED = (
    "vars", "durable_objects", "workflows", "kv_namespaces", "send_email", "queues",
    "r2_buckets", "d1_databases", "vectorize", "hyperdrive", "services",
    "analytics_engine_datasets", "dispatch_namespaces", "mtls_certificates", "browser", "ai",
    "images", "pipelines", "secrets_store_secrets", "worker_loaders", "ratelimits",
)  # fmt: skip


class Findings:
    """Collects diagnostics in the order the checks produce them."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def add(self, severity: Severity, code: str, message: str, at: Location) -> None:
        self.diagnostics.append(
            Diagnostic(severity, message, str(at.file), at.line, at.column, code)
        )

    def error(self, code: str, message: str, at: Location) -> None:
        self.add("error", code, message, at)

    def warning(self, code: str, message: str, at: Location) -> None:
        self.add("warning", code, message, at)


@dataclass(frozen=True, slots=True)
class _Scope:
    """One environment being checked: the top level (``env is None``) or ``env.<name>``."""

    node: Node
    env: str | None
    top: Node

    def inherited(self, key: str) -> Node | None:
        own = self.node.get(key)
        return own if own is not None or self.env is None else self.top.get(key)


def check_wrangler_rules(root: Node, findings: Findings) -> None:
    """Apply wrangler's rules to the top level and to every ``env.<name>``."""
    _check_scope(_Scope(root, None, root), findings)
    envs = root.get("env")
    if envs is not None and envs.is_object():
        for env_name, env_node in envs.children.items():
            if env_node.is_object():
                _check_scope(_Scope(env_node, env_name, root), findings)


def _check_scope(scope: _Scope, findings: Findings) -> None:
    node = scope.node
    _check_compatibility_date(node, findings)
    flags = node.get("compatibility_flags")
    if flags is not None and not (
        flags.is_array() and all(isinstance(item.value, str) for item in flags.items)
    ):
        findings.error(
            "wrangler.type",
            'Expected "compatibility_flags" to be of type string array but got '
            f"{js_json(flags.value)}.",
            flags.location,
        )
    name = node.get("name")
    if name is not None and not (isinstance(name.value, str) and _WORKER_NAME.match(name.value)):
        findings.error(
            "wrangler.type",
            'Expected "name" to be of type string, alphanumeric and lowercase with dashes '
            f"only but got {js_json(name.value)}.",
            name.location,
        )
    _check_string(node, "main", findings)
    limits = node.get("limits")
    if limits is not None and limits.is_object():
        for key in ("cpu_ms", "subrequests"):
            value = limits.get(key)
            if value is not None and js_typeof(value.value) != "number":
                findings.error(
                    "wrangler.type",
                    f'Expected "limits.{key}" to be of type number but got {js_json(value.value)}.',
                    value.location,
                )
    # One pass in wrangler's field order, so messages come out in the order it prints them.
    for field in _NOT_INHERITED:
        if scope.env is not None and field in scope.top.children and field not in node.children:
            _warn_not_inherited(scope, field, findings)
        elif field == "workflows":
            _check_binding_array(scope, "workflows", _check_workflow, findings)
            _check_unique_workflow_names(scope, findings)
        elif field == "worker_loaders":
            _check_binding_array(scope, "worker_loaders", _check_worker_loader, findings)
        elif field == "kv_namespaces":
            _check_binding_array(scope, "kv_namespaces", _check_kv_namespace, findings)
    _check_unique_binding_names(node, findings)
    _check_python_flag(scope, findings)


def _check_string(node: Node, key: str, findings: Findings) -> None:
    value = node.get(key)
    if value is not None and not isinstance(value.value, str):
        findings.error(
            "wrangler.type",
            f'Expected "{key}" to be of type string but got {js_json(value.value)}.',
            value.location,
        )


def parse_compatibility_date(text: str) -> date | None:
    """The date a strict ``YYYY-MM-DD`` string names, or None if it is not a real date."""
    if not _DATE.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _check_compatibility_date(node: Node, findings: Findings) -> None:
    value = node.get("compatibility_date")
    if value is None:
        return
    if not isinstance(value.value, str):
        findings.error(
            "wrangler.type",
            f'Expected "compatibility_date" to be of type string but got {js_json(value.value)}.',
            value.location,
        )
        return
    if "\u2013" in value.value or "\u2014" in value.value:
        findings.error(
            "wrangler.compatibility-date.dashes",
            '"compatibility_date" field should use ISO-8601 accepted hyphens (-) rather than '
            "en-dashes (\u2013) or em-dashes (\u2014).",
            value.location,
        )
    # Stricter than wrangler, which takes anything `new Date()` parses: dynwf needs a
    # calendar date to compare, and the Workers runtime only accepts YYYY-MM-DD.
    elif parse_compatibility_date(value.value) is None:
        findings.error(
            "wrangler.compatibility-date.format",
            '"compatibility_date" field should be a valid ISO-8601 date (YYYY-MM-DD), but got '
            f"{js_json(value.value)}.",
            value.location,
        )


def _warn_not_inherited(scope: _Scope, field: str, findings: Findings) -> None:
    env = scope.env
    findings.warning(
        "wrangler.env.not-inherited",
        f'"{field}" exists at the top level, but not on "env.{env}".\n'
        f'This is not what you probably want, since "{field}" is not inherited by '
        f'environments.\nPlease add "{field}" to "env.{env}".',
        scope.node.location,
    )


_EntryCheck = Callable[[Node, str, Findings], None]


def _check_binding_array(
    scope: _Scope, field: str, check_entry: _EntryCheck, findings: Findings
) -> None:
    value = scope.node.get(field)
    if value is None:
        return
    path = field if scope.env is None else f"env.{scope.env}.{field}"
    if not value.is_array():
        findings.error(
            f"wrangler.{field}.not-array",
            f'The field "{path}" should be an array but got {js_json(value.value)}.',
            value.location,
        )
        return
    for index, entry in enumerate(value.items):
        check_entry(entry, f"{path}[{index}]", findings)
    top = scope.top.get(field)
    if scope.env is None or top is None or not top.is_array():
        return
    # Like wrangler, one warning per top-level entry, so a name listed twice warns twice.
    present = {entry.text("binding") for entry in value.items}
    for entry in top.items:
        binding = entry.text("binding")
        if entry.is_object() and binding not in present:
            findings.warning(
                "wrangler.env.binding-missing",
                f'There is a {field} binding with name "{binding}" at the top level, but not on '
                f'"env.{scope.env}".\nThis is not what you probably want, since "{field}" '
                "configuration is not inherited by environments.\nPlease add a binding for "
                f'"{binding}" to "env.{scope.env}.{field}.bindings".',
                value.location,
            )


def _check_workflow(entry: Node, field: str, findings: Findings) -> None:
    if not entry.is_object():
        findings.error(
            "wrangler.workflows.not-object",
            f'"workflows" bindings should be objects, but got {js_json(entry.value)}',
            entry.location,
        )
        return
    whole = js_json(entry.value)
    for key in ("binding", "name"):
        if not isinstance(entry.children.get(key, Node(None, entry.location)).value, str):
            findings.error(
                f"wrangler.workflows.{key}",
                f'"{field}" bindings should have a string "{key}" field but got {whole}.',
                entry.at(key),
            )
    name = entry.get("name")
    if name is not None and isinstance(name.value, str) and not is_workflow_name(name.value):
        findings.error(
            "wrangler.workflows.name-format",
            f'"{field}" binding "name" field is invalid. {_WORKFLOW_NAME_FORMAT}',
            name.location,
        )
    class_name = entry.get("class_name")
    if class_name is None or not isinstance(class_name.value, str):
        findings.error(
            "wrangler.workflows.class_name",
            f'"{field}" bindings should have a string "class_name" field but got {whole}.',
            entry.at("class_name"),
        )
    for key, kind in (("script_name", "string"), ("remote", "boolean")):
        value = entry.get(key)
        if value is not None and js_typeof(value.value) != kind:
            findings.error(
                f"wrangler.workflows.{key}",
                f'"{field}" bindings should, optionally, have a {kind} "{key}" field but got '
                f"{whole}.",
                value.location,
            )
    limits = entry.get("limits")
    if limits is not None:
        _check_workflow_limits(limits, field, whole, findings)
    concurrency = entry.get("concurrency")
    if concurrency is not None:
        _check_workflow_concurrency(concurrency, field, whole, findings)
    _check_unexpected(entry, field, _WORKFLOW_FIELDS, findings)


def _check_workflow_concurrency(
    concurrency: Node, field: str, whole: str, findings: Findings
) -> None:
    """``concurrency = { limit = N }``: at most N instances of the workflow run at once."""
    if not concurrency.is_object():
        findings.error(
            "wrangler.workflows.concurrency",
            f'"{field}" bindings should, optionally, have an object "concurrency" field but got '
            f"{whole}.",
            concurrency.location,
        )
        return
    limit = concurrency.get("limit")
    if limit is None or not is_js_integer(limit.value) or limit.value < 1:
        got = js_json(limit.value) if limit is not None else "nothing"
        findings.error(
            "wrangler.workflows.concurrency-limit",
            f'"{field}" bindings "concurrency.limit" field must be a positive integer but got '
            f"{got}.",
            limit.location if limit is not None else concurrency.location,
        )
    _check_unexpected(concurrency, f"{field}.concurrency", ("limit",), findings)


def _check_workflow_limits(limits: Node, field: str, whole: str, findings: Findings) -> None:
    if not limits.is_object():
        findings.error(
            "wrangler.workflows.limits",
            f'"{field}" bindings should, optionally, have an object "limits" field but got '
            f"{whole}.",
            limits.location,
        )
        return
    steps = limits.get("steps")
    if steps is not None:
        value = steps.value
        if not is_js_integer(value) or value < 1:
            findings.error(
                "wrangler.workflows.limits-steps",
                f'"{field}" bindings "limits.steps" field must be a positive integer but got '
                f"{js_json(value)}.",
                steps.location,
            )
        elif value > PRODUCTION_MAX_STEPS:
            findings.warning(
                "wrangler.workflows.step-limit-exceeds-production",
                f'"{field}" has a step limit of {js_json(value)}, which exceeds the production '
                "maximum of 25,000. This configuration may not work when deployed.",
                steps.location,
            )
    _check_unexpected(limits, f"{field}.limits", ("steps",), findings)


def _check_unexpected(node: Node, field: str, known: tuple[str, ...], findings: Findings) -> None:
    unknown = [key for key in node.children if key not in known]
    if unknown:
        # wrangler joins the quoted names with a bare comma (JavaScript's Array#toString).
        findings.warning(
            "wrangler.unexpected-field",
            f"Unexpected fields found in {field} field: " + ",".join(f'"{k}"' for k in unknown),
            node.key_location(unknown[0]),
        )


def _check_unique_workflow_names(scope: _Scope, findings: Findings) -> None:
    value = scope.node.get("workflows")
    if value is None or not value.is_array():
        return
    field = "workflows" if scope.env is None else f"env.{scope.env}.workflows"
    seen: dict[object, int] = {}
    first_repeat: dict[object, Location] = {}
    for entry in value.items:
        name = entry.get("name") if entry.is_object() else None
        key = name.value if name is not None else None
        key = key if isinstance(key, (str, int, float, bool)) or key is None else js_json(key)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            first_repeat[key] = name.location if name is not None else entry.location
    duplicates = [key for key, count in seen.items() if count > 1]
    if duplicates:
        # Array#join prints a missing name as an empty string.
        listed = '", "'.join(
            k if isinstance(k, str) else "" if k is None else js_json(k) for k in duplicates
        )
        findings.error(
            "wrangler.workflows.duplicate-name",
            f'"{field}" bindings must have unique "name" values; duplicate(s) found: "{listed}"',
            first_repeat[duplicates[0]],
        )


def _check_worker_loader(entry: Node, field: str, findings: Findings) -> None:
    if not entry.is_object():
        findings.error(
            "wrangler.worker_loaders.not-object",
            f'"worker_loader" bindings should be objects, but got {js_json(entry.value)}',
            entry.location,
        )
        return
    binding = entry.get("binding")
    if binding is None or not isinstance(binding.value, str):
        findings.error(
            "wrangler.worker_loaders.binding",
            f'"{field}" bindings must have a string "binding" field but got '
            f"{js_json(entry.value)}.",
            entry.at("binding"),
        )
    _check_unexpected(entry, field, ("binding",), findings)


def _check_kv_namespace(entry: Node, field: str, findings: Findings) -> None:
    """wrangler 4.86's validateKVBinding: ``id`` is optional (wrangler can provision it)."""
    if not entry.is_object():
        findings.error(
            "wrangler.kv_namespaces.not-object",
            f'"kv_namespaces" bindings should be objects, but got {js_json(entry.value)}',
            entry.location,
        )
        return
    whole = js_json(entry.value)
    binding = entry.get("binding")
    if binding is None or not isinstance(binding.value, str):
        findings.error(
            "wrangler.kv_namespaces.binding",
            f'"{field}" bindings should have a string "binding" field but got {whole}.',
            entry.at("binding"),
        )
    namespace_id = entry.get("id")
    if namespace_id is not None and not (
        isinstance(namespace_id.value, str) and namespace_id.value
    ):
        findings.error(
            "wrangler.kv_namespaces.id",
            f'"{field}" bindings should have a string "id" field but got {whole}.',
            namespace_id.location,
        )
    preview = entry.get("preview_id")
    if preview is not None and not isinstance(preview.value, str):
        findings.error(
            "wrangler.kv_namespaces.preview_id",
            f'"{field}" bindings should, optionally, have a string "preview_id" field but got '
            f"{whole}.",
            preview.location,
        )
    remote = entry.get("remote")
    if remote is not None and not isinstance(remote.value, bool):
        findings.error(
            "wrangler.kv_namespaces.remote",
            f'"{field}" should, optionally, have a boolean "remote" field but got {whole}.',
            remote.location,
        )
    _check_unexpected(entry, field, ("binding", "id", "preview_id", "remote"), findings)


def binding_names(node: Node, kind: str) -> list[tuple[str, Location]]:
    """The binding names one kind declares, read the way wrangler's getBindingNames reads them."""
    value = node.get("producers") if kind == "queues" and node.is_object() else node
    if value is None:
        return []
    if value.is_object():
        bindings = value.get("bindings")
        if (
            bindings is not None
            and bindings.is_array()
            and all(b.text("name") is not None for b in bindings.items)
        ):
            return [(b.text("name") or "", b.at("name")) for b in bindings.items]
        binding = value.get("binding")
        if binding is not None:
            return [(str(binding.value), binding.location)]
        return [(key, value.key_location(key)) for key in value.children]
    if value.is_array() and all(e.text("binding") is not None for e in value.items):
        return [(e.text("binding") or "", e.at("binding")) for e in value.items]
    return []


def _check_unique_binding_names(node: Node, findings: Findings) -> None:
    declared: dict[str, list[tuple[str, Location]]] = {}
    for field, kind in BINDING_KINDS.items():
        value = node.get(field)
        if value is not None:
            for name, location in binding_names(value, field):
                declared.setdefault(name, []).append((kind, location))
    clashes = [name for name, uses in declared.items() if len(uses) > 1]
    for name in clashes:
        kinds = [kind for kind, _ in declared[name]]
        distinct = list(dict.fromkeys(kinds))
        if len(distinct) > 1:
            findings.error(
                "wrangler.bindings.duplicate-name",
                f"{name} assigned to {_english_list(distinct)} bindings.",
                _second_in_file(declared[name]),
            )
        for kind in dict.fromkeys(k for i, k in enumerate(kinds) if kinds.index(k) != i):
            findings.error(
                "wrangler.bindings.duplicate-name",
                f"{name} assigned to multiple {kind} bindings.",
                _second_in_file([use for use in declared[name] if use[0] == kind]),
            )
    if clashes:
        findings.error(
            "wrangler.bindings.duplicate-name",
            "Bindings must have unique names, so that they can all be referenced in the worker.\n"
            "Please change your bindings to have unique names.",
            _second_in_file(declared[clashes[0]]),
        )


def _second_in_file(uses: list[tuple[str, Location]]) -> Location:
    """Where a name is declared again: the first place it was already taken."""
    places = sorted((location for _, location in uses), key=lambda at: (at.line, at.column))
    return places[1]


def _english_list(items: list[str]) -> str:
    """``Intl.ListFormat("en-US")``: "A and B", "A, B, and C"."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _check_python_flag(scope: _Scope, findings: Findings) -> None:
    main = scope.inherited("main")
    flags = scope.inherited("compatibility_flags")
    if main is None or not isinstance(main.value, str) or not main.value.endswith(".py"):
        return
    if flags is not None and isinstance(flags.value, list) and "python_workers" in flags.value:
        return
    # Reported once for the top level; an env only when it changes main or the flags.
    own = scope.node.children
    if scope.env is not None and "main" not in own and "compatibility_flags" not in own:
        return
    findings.error(
        "wrangler.python-workers-flag",
        "The `python_workers` compatibility flag is required to use Python.",
        flags.location if flags is not None else main.location,
    )


def is_workflow_name(name: str) -> bool:
    return 0 < len(name) <= MAX_WORKFLOW_NAME_LENGTH and WORKFLOW_NAME.match(name) is not None
