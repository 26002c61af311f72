"""What crosses into a tenant the way Cloudflare's tenant runtime hands it over.

Dynamic Worker tenants get the ``workers`` SDK frozen in workerd
(``src/pyodide/internal/workers-api/src/workers/_workers.py``), where:

- ``step.wait_for_event`` returns the raw ``waitForEvent`` promise, so the awaited
  value is a JS object ``{payload, timestamp, type}``, never converted (the PyPI SDK
  a dispatcher vendors converts it; the frozen one does not);
- ``env.WORKFLOWS`` is a Fetcher (the dispatcher's ``DynamicWorkflowBinding``), whose
  wrapper passes each result through ``python_from_rpc``: the ``{id, status, pause,
  resume, terminate, restart, sendEvent}`` handle the dispatcher library returns
  (danlapid/dynamic-workflows ``_workerd.py``, ``_make_handle``) becomes a plain dict
  of an id and JS functions; what those functions return is again unconverted.

dynwf gives tenants the same shapes, so code that reads them as something else fails
here, with the portable form in the error, instead of on Cloudflare.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from dynwf.compat._jsobject import JsDate, JsMap, JsObject, convert
from dynwf.compat.js import Object

_HANDLE_METHODS = ("status", "pause", "resume", "terminate", "restart", "sendEvent")
_TO_JS_EVENT = (
    'to_js({"type": "...", "payload": ...}, dict_converter=Object.fromEntries) '
    "(`from pyodide.ffi import to_js`, `from js import Object`)"
)


def python_from_rpc(obj: Any) -> Any:
    """A JS value as Python data: objects and Maps become dicts (deeply), Dates naive datetimes."""
    if isinstance(obj, (JsObject, JsMap)):
        return {k: python_from_rpc(v) for k, v in obj.to_py().items()}
    if isinstance(obj, dict):
        return {k: python_from_rpc(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [python_from_rpc(v) for v in obj]
    if isinstance(obj, JsDate):
        return obj.to_datetime()
    return obj


def python_to_rpc(value: Any) -> Any:
    """``value`` as the frozen SDK sends it over RPC: dicts become JS Maps."""
    return convert(value, None)


def js_value(value: Any) -> Any:
    """Python data as a JS API hands it to Python: dicts become JS objects, deeply."""
    if isinstance(value, datetime):
        return JsDate(value)
    return convert(value, Object.fromEntries)


def wait_result(event: Mapping[str, Any]) -> JsObject:
    """What ``await step.wait_for_event(...)`` gives a tenant: ``{payload, timestamp, type}``."""
    fields = {"payload": js_value(event.get("payload")), "type": event.get("type")}
    timestamp = event.get("timestamp")
    fields["timestamp"] = JsDate(timestamp) if isinstance(timestamp, datetime) else timestamp
    return JsObject(fields)


class InstanceHandle(dict[str, Any]):
    """What ``await env.WORKFLOWS.create(...)``/``get(id)`` gives a tenant: a plain dict."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "id":
            use = 'handle["id"]'
        elif name in {"sendEvent", "send_event"}:
            use = f'await handle["sendEvent"]({_TO_JS_EVENT})'
        elif name == "status":
            use = 'python_from_rpc(await handle["status"]())'
        else:
            use = f'await handle["{name}"]()'
        raise AttributeError(
            f"instance.{name} does not work on Cloudflare, where the instance a tenant gets "
            f"from env.WORKFLOWS is a plain dict (keys: {', '.join(self)}): use {use}"
        )


def instance_handle(instance: Any) -> InstanceHandle:
    """The dict a tenant gets for ``instance``: its id and JS-style functions."""

    async def status() -> Any:
        return js_value(await instance.status())

    async def send_event(event: Any = None, *rest: Any) -> None:
        if not isinstance(event, JsObject):
            raise TypeError(
                f"sendEvent got a {type(event).__name__}: a Python dict passed to a JS "
                "function reaches it as a PyProxy (a Map from python_to_rpc), which "
                "Workers RPC cannot send as {type, payload}; pass "
                f"{_TO_JS_EVENT}"
            )
        await instance.send_event(python_from_rpc(event))

    def forward(method: str) -> Callable[..., Awaitable[None]]:
        async def call(*args: Any) -> None:
            # A JS function: what it is given must be a JS value already (restart's
            # {"from": ...} options, for one); a Python dict would reach it as a PyProxy.
            if any(not isinstance(a, JsObject) for a in args):
                raise TypeError(
                    f"{method} got a {type(args[0]).__name__}: a Python dict passed to a JS "
                    "function reaches it as a PyProxy, which Workers RPC cannot send; pass "
                    "to_js({...}, dict_converter=Object.fromEntries)"
                )
            await getattr(instance, method)(*(python_from_rpc(a) for a in args))

        return call

    functions: dict[str, Any] = {"status": status, "sendEvent": send_event}
    handle = InstanceHandle(id=instance.id)
    for name in _HANDLE_METHODS:
        handle[name] = functions.get(name) or forward(name)
    return handle


class TenantWorkflows:
    """A tenant's ``env.WORKFLOWS``: create/get give the dict handle Cloudflare gives.

    ``_binding`` is the binding underneath, as on Cloudflare, where
    ``dynamic_workflows.WrappedWorkflow`` reaches through the SDK's wrapper to it.
    """

    def __init__(self, binding: Any) -> None:
        self._binding = binding

    async def create(self, options: Any = None, **kwargs: Any) -> InstanceHandle:
        options = python_from_rpc(options) if options is not None else None
        created = await self._binding.create(options, **kwargs)
        return instance_handle(created)

    async def createBatch(self, items: list[Any]) -> list[InstanceHandle]:
        items = python_from_rpc(items)
        if not isinstance(items, list):
            raise TypeError(
                "createBatch of a tenant's env.WORKFLOWS (the dynamic_workflows binding) "
                f"takes a list of {{id?, params?}}, not a {type(items).__name__}: the "
                "{count} and {instances} forms are the platform's own Workflow binding's "
                "(call them from the dispatcher)"
            )
        created = await self._binding.create_batch(items)
        return [instance_handle(i) for i in created]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        use = "createBatch" if name == "create_batch" else None
        raise AttributeError(
            f"env.WORKFLOWS.{name} does not exist on Cloudflare: a tenant's binding is the "
            "dispatcher's DynamicWorkflowBinding, which has create, createBatch and get"
            + (
                f"; use {use}"
                if use
                else "; delete and deleteBatch are the platform's "
                "(the dispatcher's own binding, the explorer API, `dynwf instances delete`)"
            )
        )

    async def get(self, instance_id: str) -> InstanceHandle:
        return instance_handle(await self._binding.get(instance_id))
