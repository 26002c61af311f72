"""The portability rules as data: what fails (or may fail) on Cloudflare, and the portable form.

Each rule is one row of the two tables in the portability spec that can be seen in
source (plus what the tenant SDK's binding and wait_for_event hand back, read from its
source below). ``_portability.py`` finds them (one AST visitor); this file only says what
each one means. Rule ids are stable: they are the ``code`` of a diagnostic, prefixed
with ``portability.``. ``error`` is for what will fail on Cloudflare, ``warning`` for
what fails there only depending on code or data it cannot see (another tenant's ids).

Sources (read with the search tools, December 2026):

- the tenant SDK frozen in workerd, ``src/pyodide/internal/workers-api/src/workers/``
  (``__init__.py``'s ``__all__`` and ``workflows.py``), which Dynamic Worker tenants get
  instead of the PyPI ``workers-runtime-sdk``;
- the same SDK's ``_workers.py``: ``wait_for_event`` returns ``self._js_step.waitForEvent(...)``
  unconverted (the PyPI SDK a dispatcher vendors wraps it in ``python_from_rpc``; the
  frozen one does not), and a Fetcher binding's method results go through
  ``python_from_rpc``, which makes a plain JS object a dict;
- ``danlapid/dynamic-workflows`` ``packages/dynamic-workflows-py/src/dynamic_workflows/
  _workerd.py`` for the dispatcher library's signatures, and for the handle tenants get
  (``_make_handle``: ``{id, status, ..., sendEvent}`` of bound JS functions; its
  ``WrappedWorkflow`` docstring says the SDK turns it into a dict; ``sendEvent`` is sent
  an object made with ``to_js(..., dict_converter=Object.fromEntries)``);
- ``cloudflare/python-workers-examples`` ``17-dynamic-py-py/src/entry.py`` for the
  Worker Loader calls (``create_proxy``, ``to_js``, ``getEntrypoint``, ``_js_request``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dynwf.config._model import Severity

# Where a rule applies: the dispatcher (every .py under main's folder, vendored
# python_modules/ aside), the tenants (every .py under tenants/<tenant>/), or both.
Scope = Literal["dispatcher", "tenant", "both"]

# `from workers import X` in a tenant: the names workerd's frozen SDK exports
# (src/pyodide/internal/workers-api/src/workers/__init__.py, __all__).
FROZEN_WORKERS_NAMES = frozenset(
    {
        "Blob", "BlobEnding", "BlobValue", "Body", "Context", "DurableObject", "FetchKwargs",
        "FetchResponse", "File", "FormData", "FormDataValue", "Headers", "JSBody", "Request",
        "RequestInitCfProperties", "Response", "WorkerEntrypoint", "WorkflowEntrypoint", "env",
        "fetch", "handler", "import_from_javascript", "patch_env", "python_from_rpc",
        "python_to_rpc", "waitUntil",
    }
)  # fmt: skip
# `from workers.workflows import X` (src/pyodide/internal/workers-api/src/workers/workflows.py).
FROZEN_WORKFLOWS_NAMES = frozenset({"NonRetryableError"})
FROZEN_WORKERS_SUBMODULES = frozenset({"workflows"})

# Step config keys Cloudflare's step.do accepts.
STEP_CONFIG_KEYS = frozenset({"retries", "timeout", "sensitive"})
RETRIES_KEYS = frozenset({"limit", "delay", "backoff"})

# What a step's error can be caught as in run() on Cloudflare (workers' _from_js_error
# rebuilds only these; anything else arrives as a generic JS exception).
STEP_ERROR_CLASSES = frozenset(
    {"Exception", "BaseException", "NonRetryableError", "TypeError", "ValueError"}
)

# dict methods: `event.get("payload")` is a plain dict's method, portable as it is.
DICT_METHODS = frozenset(
    {"get", "keys", "items", "values", "copy", "__contains__", "__getitem__", "__len__"}
)

# Modules that open sockets or make HTTP requests outside `workers.fetch`.
OUTBOUND_MODULES = frozenset(
    {"socket", "ssl", "urllib.request", "http.client", "requests", "urllib3", "httpx", "aiohttp"}
)
PROCESS_MODULES = frozenset({"subprocess", "multiprocessing", "pty"})
PROCESS_OS_CALLS = frozenset(
    {"kill", "killpg", "system", "popen", "fork", "forkpty", "execv", "execve", "execvp",
     "execl", "execlp", "spawnl", "spawnv", "posix_spawn", "_exit"}
)  # fmt: skip
ENV_OS_NAMES = frozenset({"environ", "getenv", "environb", "putenv", "unsetenv"})
# What starts a Python thread, by the name it is imported under (Pyodide has no threads:
# "can't start new thread"); and the event loop's method that hands work to one.
THREAD_STARTERS = frozenset(
    {"threading.Thread", "threading.Timer", "_thread.start_new_thread", "_thread.start_new",
     "concurrent.futures.ThreadPoolExecutor", "concurrent.futures.thread.ThreadPoolExecutor",
     "asyncio.to_thread"}
)  # fmt: skip
THREAD_METHODS = frozenset({"run_in_executor"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One portability rule: how bad, where it applies, what it is, what to write instead."""

    id: str
    severity: Severity
    scope: Scope
    what: str
    portable: str


_RULES = (
    Rule(
        "dynwf-import",
        "error",
        "both",
        "`{detail}` imports dynwf, which does not exist on Cloudflare (it needs native wheels "
        "Pyodide cannot load)",
        "dispatcher: `from dynamic_workflows import DynamicWorkflowBinding, "
        "create_dynamic_workflow_entrypoint, wrap_workflow_binding` (vendored); tenants: "
        "`from workers import ...`",
    ),
    Rule(
        "workers-name",
        "error",
        "tenant",
        "`{detail}` is not in the `workers` SDK Cloudflare gives Dynamic Worker tenants "
        "(workerd's frozen copy)",
        "import only what that SDK has: from `workers` "
        + ", ".join(sorted(FROZEN_WORKERS_NAMES, key=str.lower))
        + "; from `workers.workflows` NonRetryableError (catch a step's failure with "
        "`except Exception`)",
    ),
    Rule(
        "event-attribute",
        "error",
        "tenant",
        "`{detail}`: the event given to run() is a plain dict on Cloudflare, so attribute "
        "access raises AttributeError",
        '`event["payload"]`, `event["instanceId"]`, `event["timestamp"]`',
    ),
    Rule(
        "event-key",
        "error",
        "tenant",
        "`{detail}`: behind a dispatcher the event has only payload, timestamp and "
        "instanceId (no workflowName, no schedule)",
        'put what the workflow needs in its params and read `event["payload"]`',
    ),
    Rule(
        "event-timestamp-tz",
        "error",
        "tenant",
        "`{detail}` mixes the event timestamp, a naive datetime on Cloudflare, with a "
        "timezone-aware one (TypeError there)",
        'treat `event["timestamp"]` as naive: compare it with naive datetimes '
        "(`datetime.now()`, `datetime.fromtimestamp(seconds)`)",
    ),
    Rule(
        "step-do-bare",
        "error",
        "tenant",
        "bare `@{detail}` passes the function as the step name",
        '`@step.do()` or `@step.do("name", config={...})`',
    ),
    Rule(
        "step-config-key",
        "error",
        "tenant",
        "step config key {detail} is not one Cloudflare's step.do knows",
        '`config={"retries": {"limit": 3, "delay": "2 seconds", "backoff": "exponential"}, '
        '"timeout": "30 seconds", "sensitive": "output"}`',
    ),
    Rule(
        "step-error-class",
        "error",
        "tenant",
        "`{detail}` around a step: on Cloudflare a step's error reaches run() rebuilt only as "
        "NonRetryableError, TypeError or ValueError; any other class arrives as a generic JS "
        "exception, so this clause never matches there",
        "`except Exception as exc:` (and look at `str(exc)`), `except NonRetryableError`, "
        "`except TypeError`, `except ValueError`",
    ),
    Rule(
        "wait-for-event-args",
        "error",
        "tenant",
        "`{detail}`: wait_for_event's name and type are positional-only on Cloudflare",
        '`await step.wait_for_event("approval", "approved", timeout="1 day")`',
    ),
    Rule(
        "run-sync",
        "error",
        "tenant",
        "`def run` in {detail} is synchronous; Cloudflare awaits run() and every step",
        "`async def run(self, event, step):`",
    ),
    Rule(
        "response-status-text",
        "error",
        "both",
        "`{detail}`: the third positional argument of Response is `status_text` on "
        "Cloudflare, not headers",
        "`Response(body, status=..., headers=...)` by keyword, or `Response.json(value, "
        "status=...)`",
    ),
    Rule(
        "host-file",
        "error",
        "tenant",
        "`{detail}` reads the host's files; a tenant on Cloudflare has only the modules the "
        "dispatcher gave the Worker Loader",
        "ship the data as a module (`data.json`, `text.txt`) in the tenant's folder and "
        "`import` it, or read it from a binding",
    ),
    Rule(
        "host-process",
        "error",
        "tenant",
        "`{detail}`: Workers have no processes",
        "do the work in the tenant, or call a service with `from workers import fetch`",
    ),
    Rule(
        "host-thread",
        "error",
        "both",
        "`{detail}` starts a thread; Python Workers run on Pyodide, which has none "
        "(RuntimeError: can't start new thread)",
        "run concurrent work as asyncio tasks (`asyncio.gather`, `asyncio.create_task`)",
    ),
    Rule(
        "host-env",
        "error",
        "tenant",
        "`{detail}` reads the host's environment; on Cloudflare a tenant sees only the env "
        "the dispatcher gives it",
        "`self.env.NAME` (a binding or var the dispatcher puts in the tenant's `env`)",
    ),
    Rule(
        "outbound-http",
        "error",
        "tenant",
        "`{detail}`: Workers have no raw sockets, so this cannot reach the network there",
        "`from workers import fetch` then `await fetch(url, method=..., body=...)`",
    ),
    Rule(
        "get-entrypoint",
        "error",
        "both",
        "`{detail}`: env.LOADER is a raw JS object on Cloudflare, whose method is getEntrypoint",
        "`stub.getEntrypoint(name)`",
    ),
    Rule(
        "forward-request",
        "error",
        "dispatcher",
        "`{detail}` hands a Python Request to a JS entrypoint",
        "`await stub.getEntrypoint().fetch(request.js_object)`",
    ),
    Rule(
        "outside-upload",
        "error",
        "dispatcher",
        "`{detail}` reaches above the main module's folder; `pywrangler deploy` uploads only "
        "that folder (and vendored python_modules/), so nothing up there exists on Cloudflare",
        "read tenant code from the TENANT_CODE KV binding (`await env.TENANT_CODE.get(key)`), "
        "or keep the file in the main module's folder and import it as a module",
    ),
    Rule(
        "wrap-binding-args",
        "error",
        "dispatcher",
        "`{detail}`: Cloudflare's wrap_workflow_binding(metadata, *, binding_name=...) takes "
        "no env and no second positional argument",
        '`wrap_workflow_binding({"tenantId": tenant}, binding_name="WORKFLOWS")`',
    ),
    Rule(
        "dispatch-workflow-args",
        "error",
        "dispatcher",
        "`{detail}`: dispatch_workflow takes keyword arguments only",
        "`await dispatch_workflow(env=self.env, ctx=self.ctx, event=event, step=step, "
        "load_runner=load_runner)`",
    ),
    Rule(
        "entrypoint-class-name",
        "error",
        "dispatcher",
        "{detail}",
        '`DynamicWorkflow = create_dynamic_workflow_entrypoint(load_runner, class_name="DynamicWorkflow")` '
        "(the class is exported under its class_name)",
    ),
    Rule(
        "binding-not-exported",
        "error",
        "dispatcher",
        "{detail}; Cloudflare exports only the classes the main module has, so "
        "wrap_workflow_binding raises RuntimeError ('DynamicWorkflowBinding is not registered "
        "on cloudflare:workers exports')",
        "`from dynamic_workflows import DynamicWorkflowBinding` in the main module (and "
        '"DynamicWorkflowBinding" in its `__all__` if it has one)',
    ),
    Rule(
        "loader-callback",
        "error",
        "dispatcher",
        "`{detail}`: the Worker Loader may call its callback later and more than once, "
        "which a plain Python callable or dict does not survive on Cloudflare",
        "`env.LOADER.get(loader_id, create_proxy(get_code))` (`from pyodide.ffi import "
        "create_proxy`)",
    ),
    Rule(
        "loader-code-to-js",
        "error",
        "dispatcher",
        "`{detail}`: the Worker Loader wants a JS object, not a Python dict (or a JS Map)",
        "`return to_js({...}, dict_converter=Object.fromEntries)` (`from pyodide.ffi import "
        "to_js`, `from js import Object`)",
    ),
    Rule(
        "shared-instance-id",
        "warning",
        "tenant",
        "instance id {detail}: on Cloudflare every tenant shares one id namespace per "
        "Workflow, so a second tenant creating this id fails there (dynwf scopes ids per "
        "tenant, so it works here)",
        "ids unique across tenants (prefix the tenant's id), or let Workflows generate them",
    ),
    Rule(
        "wait-for-event-result",
        "error",
        "tenant",
        "`{detail}` reads a wait_for_event result as a dict; in the SDK Cloudflare gives tenants "
        "(workerd's frozen copy) wait_for_event returns waitForEvent's promise unconverted, so "
        "the awaited value, and its payload, are JS objects: `[key]` and dict methods fail there",
        '`event = python_from_rpc(await step.wait_for_event("approval", "approved", '
        'timeout="1 day"))` (`from workers import python_from_rpc`), then `event["payload"]`',
    ),
    Rule(
        "instance-handle-attribute",
        "error",
        "tenant",
        "`{detail}`: the instance a tenant gets from env.WORKFLOWS create()/get() is a plain "
        "dict on Cloudflare (the tenant SDK's binding wrapper passes the dispatcher's "
        "{{id, status, pause, resume, terminate, restart, sendEvent}} object through "
        "python_from_rpc), so attribute access raises AttributeError",
        '`instance["id"]` (or keep the id you passed to create()), '
        '`python_from_rpc(await instance["status"]())`, `await instance["pause"]()`, '
        '`await instance["sendEvent"](to_js({"type": ..., "payload": ...}, '
        "dict_converter=Object.fromEntries))`",
    ),
    Rule(
        "tenant-binding-method",
        "error",
        "tenant",
        "`{detail}`: a tenant's env.WORKFLOWS on Cloudflare is the dispatcher's "
        "DynamicWorkflowBinding, which has only create, createBatch (a list of {{id?, params?}}) "
        "and get; deleting and the {{count}}/{{instances}} forms of createBatch are the "
        "platform's own binding's",
        '`await env.WORKFLOWS.createBatch([{"id": a}, {"id": b}])`; delete from the '
        "dispatcher (its own Workflow binding), the REST API or `dynwf instances delete`",
    ),
    Rule(
        "instance-handle-result",
        "error",
        "tenant",
        "`{detail}` reads what an instance's status() gives as a dict; on Cloudflare it is a JS "
        "object (the handle's functions are JS functions, their results unconverted)",
        '`status = python_from_rpc(await instance["status"]())` (`from workers import '
        'python_from_rpc`), then `status["status"]`, `status["output"]`',
    ),
    Rule(
        "send-event-arg",
        "error",
        "tenant",
        "`{detail}`: the handle's sendEvent is a JS function; a Python dict reaches it as a "
        "PyProxy (and python_to_rpc or to_js without dict_converter make a JS Map), which is "
        "not the {{type, payload}} object Workers RPC must send",
        '`await instance["sendEvent"](to_js({"type": "decision", "payload": payload}, '
        "dict_converter=Object.fromEntries))` (`from pyodide.ffi import to_js`, `from js import "
        "Object`)",
    ),
)

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
