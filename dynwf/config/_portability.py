"""Portability checks: read the dispatcher and every tenant (AST only) for what fails on Cloudflare.

The rules are data in ``_portability_rules.py``; ``_Visitor`` is the one pass over a
module that finds them; ``check_portability`` finds the files (``main`` of the wrangler
config and its folder, ``tenants/*/``) and adds the checks that span files (the main
module's exports, instance ids reused across tenants). Nothing here imports user code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dynwf.config._model import Diagnostic, ValidationReport
from dynwf.config._portability_rules import (
    DICT_METHODS,
    ENV_OS_NAMES,
    FROZEN_WORKERS_NAMES,
    FROZEN_WORKERS_SUBMODULES,
    FROZEN_WORKFLOWS_NAMES,
    OUTBOUND_MODULES,
    PROCESS_MODULES,
    PROCESS_OS_CALLS,
    RETRIES_KEYS,
    RULES,
    STEP_CONFIG_KEYS,
    STEP_ERROR_CLASSES,
    THREAD_METHODS,
    THREAD_STARTERS,
    Rule,
)
from dynwf.config._source import Node

# Which side a module is on: the dispatcher (main and its folder) or a tenant.
Role = Literal["dispatcher", "tenant"]
_SKIPPED_FOLDERS = frozenset(
    {"python_modules", "node_modules", "__pycache__", "tests", "tenants", ".venv", "venv"}
)
_DETAIL_CHARS = 80
_EVENT_KEYS_MISSING = frozenset({"workflowName", "schedule"})
_DEFAULT_CLASS_NAME = "DynamicWorkflow"
_BINDING_CLASS = "DynamicWorkflowBinding"


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule seen at one place of one module; ``detail`` fills the rule's message."""

    rule: str
    line: int
    column: int
    detail: str


@dataclass(slots=True)
class _Scope:
    """Names one function binds that the rules care about (closures see their parents')."""

    event: set[str] = field(default_factory=set)
    step: set[str] = field(default_factory=set)
    timestamps: set[str] = field(default_factory=set)
    aware: set[str] = field(default_factory=set)
    handles: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)
    # Names bound to a JS object a tenant gets unconverted: a wait_for_event result, and
    # what an instance handle's status() gives.
    waits: set[str] = field(default_factory=set)
    statuses: set[str] = field(default_factory=set)


class _Visitor(ast.NodeVisitor):
    """Walks one module once and records every rule it sees (filtered by role later)."""

    def __init__(self, source: str, loaders: frozenset[str]) -> None:
        self.source = source
        self.loaders = loaders
        self.hits: list[Hit] = []
        self.instance_ids: list[tuple[str, int, int]] = []
        self.scopes: list[_Scope] = [_Scope()]
        self.os_names: set[str] = set()
        self.urllib_names: set[str] = set()
        self.workers_names: set[str] = set()
        self.workflows_names: set[str] = set()
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.dicts: dict[str, ast.Dict] = {}
        # name bound by an import -> what it stands for ("th" -> "threading")
        self.imported: dict[str, str] = {}

    # -- helpers ---------------------------------------------------------------------

    def hit(self, rule: str, node: ast.AST, detail: str | None = None) -> None:
        text = detail if detail is not None else self.segment(node)
        line, column = getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1
        self.hits.append(Hit(rule, line, column, text))

    def segment(self, node: ast.AST) -> str:
        text = " ".join((ast.get_source_segment(self.source, node) or "").split())
        return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"

    def _names(self, attr: str) -> set[str]:
        found: set[str] = set()
        for scope in self.scopes:
            found |= getattr(scope, attr)
        return found

    def _is_event(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id in self._names("event")

    def _is_step(self, node: ast.AST) -> bool:
        # run()'s third parameter, and any `step` (helpers that take the step along).
        return isinstance(node, ast.Name) and (node.id == "step" or node.id in self._names("step"))

    def _is_timestamp(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self._names("timestamps")
        if isinstance(node, ast.Subscript):
            return self._is_event(node.value) and _constant(node.slice) == "timestamp"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return (
                node.func.attr == "get"
                and self._is_event(node.func.value)
                and bool(node.args)
                and _constant(node.args[0]) == "timestamp"
            )
        return False

    def _is_wait_call(self, node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"wait_for_event", "waitForEvent"}
            and self._is_step(node.func.value)
        )

    def _is_handle(self, node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id in self._names("handles")

    def _is_handle_lookup(self, node: ast.AST) -> bool:
        """``await env.WORKFLOWS.get(id)``, or ``await f(...)`` of a module function returning one."""
        if _is_instance_lookup(node):
            return True
        if not (
            isinstance(node, ast.Await)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
        ):
            return False
        function = self.functions.get(node.value.func.id)
        return function is not None and any(
            r.value is not None and _is_instance_lookup(r.value) for r in _returns(function)
        )

    def _is_status_call(self, node: ast.AST) -> bool:
        """``instance["status"]()`` on an instance handle."""
        return (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Subscript)
            and self._is_handle(node.func.value)
            and _constant(node.func.slice) == "status"
        )

    def _js_result(self, node: ast.AST) -> str | None:
        """The rule that reading ``node`` as a dict breaks, if it is a JS object there."""
        if isinstance(node, ast.Name):
            if node.id in self._names("waits"):
                return "wait-for-event-result"
            if node.id in self._names("statuses"):
                return "instance-handle-result"
        elif isinstance(node, ast.Await):
            if self._is_wait_call(node.value):
                return "wait-for-event-result"
            if self._is_status_call(node.value):
                return "instance-handle-result"
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "payload"
            and self._js_result(node.value) == "wait-for-event-result"
        ):
            # The payload of a JS object is a JS object too (unless it is a scalar).
            return "wait-for-event-result"
        return None

    def _is_aware(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self._names("aware")
        if isinstance(node, ast.BinOp):
            return self._is_aware(node.left) or self._is_aware(node.right)
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            return False
        method, keywords = node.func.attr, {k.arg for k in node.keywords}
        if method == "now":
            return bool(node.args) or "tz" in keywords
        if method == "fromtimestamp":
            return len(node.args) >= 2 or "tz" in keywords
        if method == "replace":
            return any(k.arg == "tzinfo" and _constant(k.value) is not None for k in node.keywords)
        return method == "astimezone"

    # -- scopes ----------------------------------------------------------------------

    def visit_Module(self, node: ast.Module) -> None:
        for child in ast.walk(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(child.name, child)
            elif isinstance(child, ast.Assign) and isinstance(child.value, ast.Dict):
                for target in child.targets:
                    if isinstance(target, ast.Name):
                        self.dicts[target.id] = child.value
        self.generic_visit(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        workflow = any(_dotted(base).endswith("WorkflowEntrypoint") for base in node.bases)
        for item in node.body:
            if workflow and isinstance(item, ast.FunctionDef) and item.name == "run":
                self.hit("run-sync", item, node.name)
        for item in node.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "run":
                self._function(item, run=True)
            else:
                self.visit(item)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node, run=False)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node, run=False)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef, *, run: bool) -> None:
        for decorator in node.decorator_list:
            if (
                isinstance(decorator, ast.Attribute)
                and decorator.attr == "do"
                and self._is_step(decorator.value)
            ):
                self.hit("step-do-bare", decorator)
            elif (
                isinstance(decorator, ast.Call)
                and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "do"
                and self._is_step(decorator.func.value)
            ):
                self.scopes[-1].steps.add(node.name)
            self.visit(decorator)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        scope = _Scope()
        params = [*node.args.posonlyargs, *node.args.args]
        if run and len(params) >= 3:
            scope.event.add(params[1].arg)
            scope.step.add(params[2].arg)
        self.scopes.append(scope)
        for statement in node.body:
            self.visit(statement)
        self.scopes.pop()

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.generic_visit(node)

    # -- imports ---------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            name, bound = alias.name, alias.asname or alias.name.split(".")[0]
            self.imported[bound] = name if alias.asname else bound
            self._imported_module(node, name)
            if name == "os":
                self.os_names.add(bound)
            elif name == "urllib":
                self.urllib_names.add(bound)
            elif name == "workers":
                self.workers_names.add(bound)
            elif name == "workers.workflows" and alias.asname:
                self.workflows_names.add(alias.asname)
            elif name == "workers.workflows":
                self.workers_names.add("workers")

    def _imported_module(self, node: ast.AST, name: str) -> None:
        top = name.split(".")[0]
        if top == "dynwf":
            self.hit("dynwf-import", node)
        elif name in OUTBOUND_MODULES or top in OUTBOUND_MODULES:
            self.hit("outbound-http", node)
        elif top in PROCESS_MODULES:
            self.hit("host-process", node)
        elif top == "workers" and name != "workers":
            submodule = name.split(".")[1]
            if submodule not in FROZEN_WORKERS_SUBMODULES:
                self.hit("workers-name", node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or node.module is None:
            return
        module = node.module
        self._imported_module(node, module)
        for alias in node.names:
            bound = alias.asname or alias.name
            full = f"{module}.{alias.name}"
            self.imported[bound] = full
            if full in OUTBOUND_MODULES:
                self.hit("outbound-http", node, f"from {module} import {alias.name}")
            elif module == "os" and alias.name in ENV_OS_NAMES:
                self.hit("host-env", node, f"from os import {alias.name}")
            elif module == "os" and alias.name in PROCESS_OS_CALLS:
                self.hit("host-process", node, f"from os import {alias.name}")
            elif module == "workers":
                if alias.name == "workflows":
                    self.workflows_names.add(bound)
                elif alias.name not in FROZEN_WORKERS_NAMES:
                    self.hit("workers-name", node, f"from workers import {alias.name}")
            elif module == "workers.workflows" and alias.name not in FROZEN_WORKFLOWS_NAMES:
                self.hit("workers-name", node, f"from workers.workflows import {alias.name}")

    # -- expressions -----------------------------------------------------------------

    def visit_Attribute(self, node: ast.Attribute) -> None:
        owner = node.value
        if node.attr == "parent" and _above_file(node) and not self._reported_above(node):
            self.hit("outside-upload", node)
        if isinstance(node.ctx, ast.Load):
            if self._is_event(owner) and node.attr not in DICT_METHODS:
                self.hit("event-attribute", node)
            elif self._is_handle(owner) and node.attr not in DICT_METHODS:
                self.hit("instance-handle-attribute", node)
        if isinstance(owner, ast.Name):
            if owner.id in self.os_names and node.attr in ENV_OS_NAMES:
                self.hit("host-env", node)
            elif owner.id in self.os_names and node.attr in PROCESS_OS_CALLS:
                self.hit("host-process", node)
            elif owner.id in self.urllib_names and node.attr == "request":
                self.hit("outbound-http", node)
            elif (
                owner.id in self.workers_names
                and node.attr not in (FROZEN_WORKERS_NAMES | FROZEN_WORKERS_SUBMODULES)
            ) or (owner.id in self.workflows_names and node.attr not in FROZEN_WORKFLOWS_NAMES):
                self.hit("workers-name", node)
        elif (
            isinstance(owner, ast.Attribute)
            and isinstance(owner.value, ast.Name)
            and owner.value.id in self.workers_names
            and owner.attr == "workflows"
            and node.attr not in FROZEN_WORKFLOWS_NAMES
        ):
            self.hit("workers-name", node)
        self.generic_visit(node)

    def _reported_above(self, node: ast.Attribute) -> bool:
        """One hit per chain: ``Path(__file__).parent.parent.parent`` is one place."""
        line, column = node.lineno, node.col_offset + 1
        return any(
            h.rule == "outside-upload" and (h.line, h.column) == (line, column) for h in self.hits
        )

    def visit_Try(self, node: ast.Try) -> None:
        self._step_handlers(node)
        self.generic_visit(node)

    def visit_TryStar(self, node: ast.TryStar) -> None:
        self._step_handlers(node)
        self.generic_visit(node)

    def _step_handlers(self, node: ast.Try | ast.TryStar) -> None:
        """``except KeyError`` around an awaited step: never matches on Cloudflare."""
        steps = self._names("steps")
        awaits_step = any(
            isinstance(inner, ast.Await)
            and isinstance(inner.value, ast.Call)
            and (
                (isinstance(inner.value.func, ast.Name) and inner.value.func.id in steps)
                or (
                    isinstance(inner.value.func, ast.Attribute)
                    and self._is_step(inner.value.func.value)
                )
            )
            for statement in node.body
            for inner in ast.walk(statement)
        )
        if not awaits_step:
            return
        for handler in node.handlers:
            caught = handler.type
            kinds = caught.elts if isinstance(caught, ast.Tuple) else [caught] if caught else []
            names = [_dotted(k).rsplit(".", 1)[-1] for k in kinds]
            if any(name not in STEP_ERROR_CLASSES for name in names):
                assert caught is not None
                self.hit("step-error-class", handler, f"except {self.segment(caught)}")

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self._is_event(node.value) and _constant(node.slice) in _EVENT_KEYS_MISSING:
            self.hit("event-key", node)
        if isinstance(node.ctx, ast.Load) and (rule := self._js_result(node.value)):
            self.hit(rule, node)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None and (rule := self._js_result(value)):
                self.hit(rule, node, f"**{self.segment(value)}")
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self._mixed_time(node, [node.left, node.right])
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        self._mixed_time(node, [node.left, *node.comparators])
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, (ast.In, ast.NotIn)) and (rule := self._js_result(right)):
                self.hit(rule, node)
        self.generic_visit(node)

    def _mixed_time(self, node: ast.AST, operands: list[ast.expr]) -> None:
        if any(self._is_timestamp(o) for o in operands) and any(
            self._is_aware(o) for o in operands
        ):
            self.hit("event-timestamp-tz", node)

    def visit_Assign(self, node: ast.Assign) -> None:
        # The value first: in `ev = python_from_rpc(ev)` it reads the old binding.
        self.generic_visit(node)
        names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        value = node.value
        scope = self.scopes[-1]
        if self._is_timestamp(value):
            scope.timestamps.update(names)
        if self._is_aware(value):
            scope.aware.update(names)
        js = {
            "handles": self._is_handle_lookup(value),
            "waits": isinstance(value, ast.Await) and self._is_wait_call(value.value),
            "statuses": isinstance(value, ast.Await) and self._is_status_call(value.value),
        }
        for kind, bound in js.items():
            if bound:
                getattr(scope, kind).update(names)
            else:
                getattr(scope, kind).difference_update(names)
        if isinstance(value, ast.Call) and _called(value) == "create_dynamic_workflow_entrypoint":
            self._entrypoint_class(names, value)

    def _entrypoint_class(self, names: list[str], call: ast.Call) -> None:
        class_name: object = _DEFAULT_CLASS_NAME
        for keyword in call.keywords:
            if keyword.arg == "class_name":
                class_name = _constant(keyword.value)
        if not isinstance(class_name, str):
            return
        for name in names:
            if name != class_name:
                self.hit(
                    "entrypoint-class-name",
                    call,
                    f"`{name} = {self.segment(call)}` makes a class named {class_name!r}, "
                    f"which Cloudflare exports as {class_name}, so a class_name {name} is not "
                    "found there",
                )

    def visit_Call(self, node: ast.Call) -> None:
        func, name = node.func, _called(node)
        if isinstance(func, ast.Attribute):
            self._method_call(node, func)
        if self._qualified(func) in THREAD_STARTERS or (
            isinstance(func, ast.Attribute) and func.attr in THREAD_METHODS
        ):
            self.hit("host-thread", node)
        if name == "open" and self._is_open(func):
            self.hit("host-file", node)
        elif name == "dict" and node.args and (rule := self._js_result(node.args[0])):
            self.hit(rule, node)
        for keyword in node.keywords:
            if keyword.arg is None and (rule := self._js_result(keyword.value)):
                self.hit(rule, node, f"**{self.segment(keyword.value)}")
        if (
            isinstance(func, ast.Subscript)
            and self._is_handle(func.value)
            and _constant(func.slice) == "sendEvent"
            and not _is_js_object(node.args[0] if node.args else None)
        ):
            self.hit("send-event-arg", node)
        elif (
            name == "Response"
            and len([a for a in node.args if not isinstance(a, ast.Starred)]) >= 3
        ):
            self.hit("response-status-text", node)
        elif name == "wrap_workflow_binding" and (
            len(node.args) > 1 or any(k.arg == "env" for k in node.keywords)
        ):
            self.hit("wrap-binding-args", node)
        elif name == "dispatch_workflow" and node.args:
            self.hit("dispatch-workflow-args", node)
        self.generic_visit(node)

    def _qualified(self, func: ast.expr) -> str:
        """A dotted callee with its first name resolved through the module's imports
        (``th.Thread`` after ``import threading as th``: ``threading.Thread``); "" if not."""
        parts: list[str] = []
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if not isinstance(func, ast.Name) or func.id not in self.imported:
            return ""
        return ".".join([self.imported[func.id], *reversed(parts)])

    def _is_open(self, func: ast.expr) -> bool:
        """``open(...)``, ``io.open(...)``, ``os.open(...)``."""
        if isinstance(func, ast.Name):
            return True
        return (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in {"io", *self.os_names}
        )

    def _method_call(self, node: ast.Call, func: ast.Attribute) -> None:
        method, owner = func.attr, func.value
        if method == "get_entrypoint":
            self.hit("get-entrypoint", node)
        elif method == "get" and self._is_event(owner) and node.args:
            if _constant(node.args[0]) in _EVENT_KEYS_MISSING:
                self.hit("event-key", node)
        elif method == "do" and self._is_step(owner):
            self._step_config(node)
        elif method in DICT_METHODS and (rule := self._js_result(owner)):
            self.hit(rule, node)
        elif method == "wait_for_event" and self._is_step(owner):
            if any(k.arg in {"name", "event_type", "type"} for k in node.keywords):
                self.hit("wait-for-event-args", node)
        elif method == "fetch" and isinstance(owner, ast.Call) and node.args:
            if _called(owner) in {"getEntrypoint", "get_entrypoint"} and isinstance(
                node.args[0], ast.Name
            ):
                self.hit("forward-request", node)
        elif method == "get" and len(node.args) >= 2 and self._is_loader(owner):
            self._loader_get(node)
        elif method == "create":
            self._instance_id(node)
        elif _is_env_binding(owner) and (
            method in _NOT_TENANT_BINDING_METHODS
            or (method == "createBatch" and node.args and isinstance(node.args[0], ast.Dict))
        ):
            self.hit("tenant-binding-method", node)

    def _is_loader(self, node: ast.AST) -> bool:
        if not isinstance(node, ast.Attribute):
            return False
        owner = node.value
        on_env = (
            (isinstance(owner, ast.Name) and owner.id == "env")
            or (isinstance(owner, ast.Attribute) and owner.attr == "env")
            or (isinstance(owner, ast.Subscript) and _constant(owner.slice) == "env")
        )
        if not on_env:
            return False
        return node.attr in self.loaders if self.loaders else "LOADER" in node.attr.upper()

    def _loader_get(self, node: ast.Call) -> None:
        callback = node.args[1]
        if not (isinstance(callback, ast.Call) and _called(callback) == "create_proxy"):
            self.hit("loader-callback", node)
            return
        if not callback.args:
            return
        target = callback.args[0]
        returns: list[ast.expr] = []
        if isinstance(target, ast.Lambda):
            returns = [target.body]
        elif isinstance(target, ast.Name) and target.id in self.functions:
            returns = [r.value for r in _returns(self.functions[target.id]) if r.value is not None]
        for value in returns:
            if isinstance(value, ast.Dict) or (
                isinstance(value, ast.Call)
                and _called(value) == "to_js"
                and not any(k.arg == "dict_converter" for k in value.keywords)
            ):
                self.hit("loader-code-to-js", value)

    def _step_config(self, node: ast.Call) -> None:
        config: ast.expr | None = next(
            (k.value for k in node.keywords if k.arg == "config"),
            node.args[1] if len(node.args) >= 2 else None,
        )
        if isinstance(config, ast.Name):
            config = self.dicts.get(config.id)
        if not isinstance(config, ast.Dict):
            return
        for key, value in zip(config.keys, config.values, strict=True):
            text = _constant(key) if key is not None else None
            if not isinstance(text, str):
                continue
            if text not in STEP_CONFIG_KEYS:
                assert key is not None
                self.hit("step-config-key", key, repr(text))
            elif text == "retries" and isinstance(value, ast.Dict):
                for inner in value.keys:
                    inner_text = _constant(inner) if inner is not None else None
                    if isinstance(inner_text, str) and inner_text not in RETRIES_KEYS:
                        assert inner is not None
                        self.hit("step-config-key", inner, repr(f"retries.{inner_text}"))

    def _instance_id(self, node: ast.Call) -> None:
        literal: ast.expr | None = None
        for keyword in node.keywords:
            if keyword.arg == "id":
                literal = keyword.value
        if node.args and isinstance(node.args[0], ast.Dict):
            for key, value in zip(node.args[0].keys, node.args[0].values, strict=True):
                if key is not None and _constant(key) == "id":
                    literal = value
        text = _constant(literal) if literal is not None else None
        if isinstance(text, str) and literal is not None:
            self.instance_ids.append((text, literal.lineno, literal.col_offset + 1))


def _constant(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _above_file(node: ast.Attribute) -> bool:
    """``<...__file__...>.parent.parent``: a path above the folder of the module itself."""
    parents, inner = 0, node.value
    while isinstance(inner, ast.Attribute) and inner.attr == "parent":
        parents, inner = parents + 1, inner.value
    return parents >= 1 and any(
        isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(inner)
    )


def _called(node: ast.Call) -> str:
    """The last name of what a call calls: ``f`` for ``f()`` and ``a.b.f()``."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _returns(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.Return]:
    """The function's own return statements (not those of functions nested in it)."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return):
            yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def _is_js_object(node: ast.AST | None) -> bool:
    """Not a value a JS function reads as ``{type, payload}``: no argument, a dict, a Map.

    Anything else (a name, another call) cannot be told from source, so it passes.
    """
    if node is None or isinstance(node, (ast.Dict, ast.DictComp)):
        return False
    if isinstance(node, ast.Call) and _called(node) == "python_to_rpc":
        return False
    if isinstance(node, ast.Call) and _called(node) == "to_js":
        return any(k.arg == "dict_converter" for k in node.keywords)
    return True


# Workflow binding methods a tenant's env.WORKFLOWS (DynamicWorkflowBinding) lacks; `delete`
# is left out: a KV namespace binding has one.
_NOT_TENANT_BINDING_METHODS = frozenset({"create_batch", "delete_batch", "deleteBatch"})


def _is_env_binding(node: ast.AST) -> bool:
    """``env.X`` or ``<something>.env.X``."""
    if not isinstance(node, ast.Attribute):
        return False
    owner = node.value
    return (isinstance(owner, ast.Name) and owner.id == "env") or (
        isinstance(owner, ast.Attribute) and owner.attr == "env"
    )


def _is_instance_lookup(node: ast.AST) -> bool:
    """``await <something>.env.X.create(...)`` / ``.get(...)``: an instance handle."""
    if not isinstance(node, ast.Await) or not isinstance(node.value, ast.Call):
        return False
    func = node.value.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in {"create", "get"}
        and _is_env_binding(func.value)
    )


@dataclass(frozen=True, slots=True)
class ModuleFindings:
    """What one pass over one module found."""

    hits: tuple[Hit, ...]
    instance_ids: tuple[tuple[str, int, int], ...]
    tree: ast.Module


def scan_module(
    source: str, filename: str, loaders: frozenset[str] = frozenset()
) -> ModuleFindings:
    """Every rule one module breaks, whatever its role; raises SyntaxError if it does not parse."""
    tree = ast.parse(source, filename=filename)
    visitor = _Visitor(source, loaders)
    visitor.visit(tree)
    hits = sorted(set(visitor.hits), key=lambda h: (h.line, h.column, h.rule))
    return ModuleFindings(tuple(hits), tuple(visitor.instance_ids), tree)


def applies(rule: Rule, role: Role) -> bool:
    return rule.scope == "both" or rule.scope == role


def main_module_hits(tree: ast.Module, class_names: tuple[str, ...]) -> list[Hit]:
    """What Cloudflare needs the dispatcher's main module itself to export."""
    bound: set[str] = set()
    first_wrap: ast.AST | None = None
    exported: tuple[ast.AST, list[str]] | None = None
    for statement in tree.body:
        if isinstance(statement, (ast.Import, ast.ImportFrom)):
            for alias in statement.names:
                bound.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            bound.add(statement.name)
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                if isinstance(target, ast.Name):
                    bound.add(target.id)
                    if target.id == "__all__" and isinstance(
                        statement.value, (ast.List, ast.Tuple)
                    ):
                        listed = [_constant(e) for e in statement.value.elts]
                        exported = (statement, [v for v in listed if isinstance(v, str)])
    for node in ast.walk(tree):
        uses = (isinstance(node, ast.Name) and node.id == "wrap_workflow_binding") or (
            isinstance(node, ast.alias) and node.name == "wrap_workflow_binding"
        )
        if uses and (first_wrap is None or _position(node) < _position(first_wrap)):
            first_wrap = node
    hits: list[Hit] = []
    if first_wrap is not None and _BINDING_CLASS not in bound:
        line, column = _position(first_wrap)
        hits.append(
            Hit(
                "binding-not-exported",
                line,
                column,
                f"the main module uses wrap_workflow_binding but does not import {_BINDING_CLASS}",
            )
        )
    if exported is not None:
        node, names = exported
        wanted = [_BINDING_CLASS] if first_wrap is not None else []
        wanted += [n for n in class_names if n in bound]
        missing = [n for n in wanted if n not in names]
        if missing:
            line, column = _position(node)
            hits.append(
                Hit(
                    "binding-not-exported",
                    line,
                    column,
                    f"`__all__` of the main module does not list {', '.join(missing)}",
                )
            )
    return hits


def _position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 1), getattr(node, "col_offset", 0) + 1


@dataclass(frozen=True, slots=True)
class _Source:
    path: Path
    role: Role
    tenant: str | None
    is_main: bool


def _python_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        parts = path.relative_to(folder).parts[:-1]
        if any(p in _SKIPPED_FOLDERS or p.startswith(".") for p in parts):
            continue
        found.append(path)
    return found


def _sources(project: Path, main: Path | None) -> list[_Source]:
    from dynwf.project._tenant_code import tenant_folders  # dynwf.project imports config

    sources: list[_Source] = []
    if main is not None:
        sources.append(_Source(main, "dispatcher", None, True))
        sources += [
            _Source(p, "dispatcher", None, False) for p in _python_files(main.parent) if p != main
        ]
    for folder in tenant_folders(project):
        sources += [_Source(p, "tenant", folder.name, False) for p in _python_files(folder)]
    return sources


def portability_diagnostics(
    project: Path, main: Path | None, loaders: frozenset[str], class_names: tuple[str, ...]
) -> list[Diagnostic]:
    """Every portability finding for a project whose dispatcher module is ``main``."""
    diagnostics: list[Diagnostic] = []
    ids: dict[str, list[tuple[str, Path, int, int]]] = {}
    for source in _sources(project, main):
        try:
            text = source.path.read_text(encoding="utf-8")
            found = scan_module(text, str(source.path), loaders)
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None) or 1
            column = getattr(exc, "offset", None) or 1
            diagnostics.append(
                Diagnostic(
                    "error",
                    f"cannot read {source.path.name} to check it: {exc}",
                    str(source.path),
                    line,
                    column,
                    "dynwf.portability.unreadable",
                    "fix the file so Python can parse it",
                )
            )
            continue
        hits = [h for h in found.hits if applies(RULES[h.rule], source.role)]
        if source.is_main:
            hits += main_module_hits(found.tree, class_names)
        diagnostics += [_diagnostic(h, source.path) for h in hits]
        if source.tenant is not None:
            for literal, line, column in found.instance_ids:
                ids.setdefault(literal, []).append((source.tenant, source.path, line, column))
    for literal, uses in ids.items():
        if len({tenant for tenant, *_ in uses}) < 2:
            continue
        tenants = ", ".join(sorted({tenant for tenant, *_ in uses}))
        for _tenant, path, line, column in uses:
            hit = Hit("shared-instance-id", line, column, f"{literal!r} (tenants {tenants})")
            diagnostics.append(_diagnostic(hit, path))
    return diagnostics


def _diagnostic(hit: Hit, path: Path) -> Diagnostic:
    rule = RULES[hit.rule]
    return Diagnostic(
        rule.severity,
        rule.what.format(detail=hit.detail),
        str(path),
        hit.line,
        hit.column,
        f"dynwf.portability.{rule.id}",
        rule.portable,
    )


def check_portability_root(root: Node, config_path: Path) -> ValidationReport:
    """The portability report for a parsed config (see ``check_portability``)."""
    project = config_path.parent
    main_node = root.get("main")
    main: Path | None = None
    if (
        main_node is not None
        and isinstance(main_node.value, str)
        and main_node.value.endswith(".py")
    ):
        candidate = (project / main_node.value).resolve()
        main = candidate if candidate.is_file() else None
    loaders = root.get("worker_loaders")
    loader_names = frozenset(
        name
        for entry in (loaders.items if loaders is not None and loaders.is_array() else ())
        if (name := entry.text("binding")) is not None
    )
    workflows = root.get("workflows")
    class_names = tuple(
        name
        for entry in (workflows.items if workflows is not None and workflows.is_array() else ())
        if entry.get("script_name") is None and (name := entry.text("class_name")) is not None
    )
    diagnostics = portability_diagnostics(project, main, loader_names, class_names)
    return ValidationReport(config_path, tuple(diagnostics))
