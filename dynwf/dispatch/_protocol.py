"""What an isolate may ask of the engine, as data: every other message ends the isolate.

Tenant code runs in the isolate's process, so everything it sends is untrusted. A
request names an ``op``; ``host`` calls (a pass's step calls) and ``binding`` calls (the
tenant's Workflow binding) name a method; an ``outbound`` request is the tenant's
``fetch`` (``from workers import fetch``), which the engine sends on as the loader's
``globalOutbound`` says. Each allowed method has one row below with the
JSON shape of its arguments, exactly as ``_isolate_main.py`` sends them; ``check``
returns why a message is not one of them (or None), before anything in the engine
reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

Check = Callable[[Any], bool]


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _int(v: Any) -> bool:
    return type(v) is int  # JSON true/false are not counts


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _any(v: Any) -> bool:
    return True


def _obj(v: Any) -> bool:
    return isinstance(v, dict)


def _list(v: Any) -> bool:
    return isinstance(v, list)


def _opt(check: Check) -> Check:
    return lambda v: v is None or check(v)


def is_error(v: Any) -> bool:
    """An error as data (a step's, or a run's answer): ``{"name": str, "message": str}``."""
    return (
        isinstance(v, dict)
        and isinstance(v.get("name", ""), str)
        and isinstance(v.get("message", ""), str)
    )


# The step host's methods (``dynwf.engine._pass.Pass``) an isolate may call, and the
# shape of their positional arguments.
HOST_CALLS: Mapping[str, tuple[Check, ...]] = {
    # key, name, count, config (any value: the engine checks a config, as for inline code)
    "do_begin": (_str, _str, _int, _any),
    # key, attempt: the attempt's callback began (one way)
    "began": (_str, _int),
    # key, name, count, config: the pass's first step.do, begun on the run's grant (one way)
    "granted": (_str, _str, _int, _any),
    # key, attempt, ok, value, error, retryable[, delay ms: a dynamic retry delay's answer]
    "do_end": (_str, _int, _bool, _any, _opt(is_error), _bool, _opt(_int)),
    # key, name, count, ms, until
    "sleep": (_str, _str, _int, _int, _opt(_int)),
    # key, name, count, event type, timeout ms
    "wait_for_event": (_str, _str, _int, _str, _int),
}

# The tenant's Workflow binding: (kind, method) -> the shape of its arguments.
BINDING_CALLS: Mapping[tuple[str, str], tuple[Check, ...]] = {
    ("binding", "create"): (_obj,),
    ("binding", "create_batch"): (_any,),  # a list, or {"count"} / {"instances"}
    ("binding", "get"): (_str,),
    ("binding", "delete_batch"): (_list,),
    ("instance", "delete"): (_str,),
    ("instance", "status"): (_str,),
    ("instance", "pause"): (_str,),
    ("instance", "resume"): (_str,),
    ("instance", "terminate"): (_str,),
    ("instance", "restart"): (_str, _any),  # id, options (None or {"from": ...})
    ("instance", "send_event"): (_str, _obj),
}


# The request of an ``outbound`` call: its fields and their shapes (the body in hex).
OUTBOUND_REQUEST: Mapping[str, Check] = {
    "url": _str,
    "method": _str,
    "headers": lambda v: (
        isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items())
    ),
    "body": _str,
}


# Host calls an isolate sends one way (no answer awaited).
ONE_WAY = frozenset({"do_end", "began", "granted"})


def _args(args: Any, shape: tuple[Check, ...], what: str) -> str | None:
    if isinstance(args, list) and len(args) == len(shape) - 1 and shape[-1](None):
        shape = shape[:-1]  # an optional last argument left out
    if not isinstance(args, list) or len(args) != len(shape):
        return f"{what} takes {len(shape)} arguments as a list, got {_short(args)}"
    for i, (check, value) in enumerate(zip(shape, args, strict=True)):
        if not check(value):
            return f"{what}: argument {i + 1} has the wrong type ({_short(value)})"
    return None


def check(msg: dict[str, Any], bindings: Collection[str]) -> str | None:
    """Why ``msg`` (a request or one-way message from an isolate) is not allowed, or None."""
    op = msg.get("op")
    n = msg.get("id")
    if n is not None and not _int(n):
        return f"request id {_short(n)} is not an integer"
    if op == "host":
        method = msg.get("method")
        if not isinstance(method, str) or method not in HOST_CALLS:
            return f"unknown step-host method {_short(method)}"
        if not _str(msg.get("run")):
            return f"host call {method!r} names no run pass"
        if n is None and method not in ONE_WAY:
            return f"host call {method!r} sent one way (only began, granted and do_end may be)"
        if n is not None and method == "granted":
            return "host call 'granted' is sent one way"
        why = _args(msg.get("args"), HOST_CALLS[method], method)
        if why is None and method == "do_end" and not msg["args"][2] and msg["args"][4] is None:
            return "do_end: a failed attempt without its error"
        return why
    if op == "binding":
        kind, method = msg.get("kind"), msg.get("method")
        key = (kind, method) if isinstance(kind, str) and isinstance(method, str) else None
        shape = BINDING_CALLS.get(key) if key is not None else None
        if key is None or shape is None:
            return f"unknown binding call {_short(kind)}.{_short(method)}"
        name = msg.get("binding")
        if not isinstance(name, str) or name not in bindings:
            return f"binding call to {_short(name)}, which is not a binding of this worker"
        if n is None:
            return f"binding call {key[1]!r} sent one way"
        return _args(msg.get("args"), shape, f"{key[0]}.{key[1]}")
    if op == "outbound":
        if n is None:
            return "outbound fetch sent one way"
        request = msg.get("request")
        if not isinstance(request, dict) or set(request) != set(OUTBOUND_REQUEST):
            return f"outbound fetch without a request of fields {sorted(OUTBOUND_REQUEST)}"
        for name, field_check in OUTBOUND_REQUEST.items():
            if not field_check(request[name]):
                return f"outbound fetch: {name} has the wrong type ({_short(request[name])})"
        return None
    return f"unknown request op {_short(op)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
