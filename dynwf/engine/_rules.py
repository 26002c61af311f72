"""The input rules of Cloudflare Workflows: names, ids, event types, JSON values, sizes."""

from __future__ import annotations

import json
import re
from typing import Any

from dynwf.engine._config import parse_duration
from dynwf.errors import PayloadError, ValidationError

ID_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9\-_]*$")
MAX_PAYLOAD_BYTES = 1024 * 1024
MAX_STEP_NAME = 256
DEFAULT_STEP_LIMIT = 10_000
# The compatibility date a Worker without one runs with (a project, an isolate, a Workflow).
DEFAULT_COMPATIBILITY_DATE = "2026-04-01"
PRODUCTION_MAX_STEPS = 25_000
MAX_BATCH = 100


def check_instance_id(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 100 or not ID_PATTERN.match(value):
        raise ValidationError(
            f"instance id {value!r} is invalid: ids are 1-100 characters, start with a letter, "
            "digit or underscore, and contain only letters, digits, '-' and '_'"
        )
    return value


def check_workflow_name(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not ID_PATTERN.match(value):
        raise ValidationError(
            f"workflow name {value!r} is invalid: names are 1-64 characters, start with a letter, "
            "digit or underscore, and contain only letters, digits, '-' and '_'"
        )
    return value


def check_event_type(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 100 or not ID_PATTERN.match(value):
        raise ValidationError(
            f"event type {value!r} is invalid: types are 1-100 characters matching "
            "^[a-zA-Z0-9_][a-zA-Z0-9-_]*$"
        )
    return value


def check_step_name(value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_STEP_NAME:
        raise ValidationError(
            f"step name {value!r} is invalid: step names are strings of 1 to {MAX_STEP_NAME} characters"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError(f"step name {value!r} is invalid: it contains a control character")
    return value


def _to_json_value(value: Any, path: str) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise PayloadError(f"{path} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, (list, tuple)):
        return [_to_json_value(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise PayloadError(
                    f"{path} has a key of type {type(k).__name__} ({k!r}); JSON object keys are str"
                )
            out[k] = _to_json_value(v, f"{path}[{k!r}]")
        return out
    raise PayloadError(
        f"{path} is of type {type(value).__name__}, which is not JSON-representable "
        "(use dict, list, str, int, float, bool or None)"
    )


def json_value(value: Any, *, what: str) -> tuple[Any, str]:
    """Check a value is JSON and at most 1 MiB; return it (tuples as lists) and its JSON text."""
    clean = _to_json_value(value, what)
    text = json.dumps(clean, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadError(
            f"{what} is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES} bytes (1 MiB)"
        )
    return clean, text


def check_id_batch(ids: object, *, what: str) -> list[str]:
    """1 to ``MAX_BATCH`` instance ids, each once, in first-seen order."""
    if not isinstance(ids, list | tuple) or not 1 <= len(ids) <= MAX_BATCH:
        n = len(ids) if isinstance(ids, list | tuple) else type(ids).__name__
        raise ValidationError(f"{what} takes a list of 1 to {MAX_BATCH} instance ids, got {n}")
    bad = [i for i in ids if not isinstance(i, str)]
    if bad:
        raise ValidationError(
            f"{what} takes instance id strings; got {bad[0]!r} ({type(bad[0]).__name__})"
        )
    return list(dict.fromkeys(ids))


def batch_items(spec: object) -> list[dict[str, Any]]:
    """The create options a ``create_batch`` dict form stands for: ``{"count": n,
    "params"?}`` (n instances with new ids and the same params) or ``{"instances":
    [options, ...]}``; anything else raises ``ValidationError``."""
    forms = '{"count": n, "params"?: ...} or {"instances": [{"id"?, "params"?}, ...]}'
    if not isinstance(spec, dict):
        raise ValidationError(f"create_batch takes a list or {forms}, got {spec!r}")
    if ("count" in spec) == ("instances" in spec):
        raise ValidationError(
            f"create_batch takes exactly one of 'count' and 'instances': {forms}; "
            f"got keys {sorted(spec)}"
        )
    if "count" in spec:
        unknown = sorted(set(spec) - {"count", "params", "retention"})
        if unknown:
            raise ValidationError(
                f"unknown key(s) {unknown} beside 'count' in create_batch; allowed: "
                "'count', 'params', 'retention'"
            )
        n = spec["count"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_BATCH:
            raise ValidationError(
                f"create_batch count must be an integer from 1 to {MAX_BATCH}, got {n!r}"
            )
        shared = {k: v for k, v in spec.items() if k != "count"}
        return [dict(shared) for _ in range(n)]
    unknown = sorted(set(spec) - {"instances"})
    if unknown:
        raise ValidationError(
            f"unknown key(s) {unknown} beside 'instances' in create_batch; allowed: 'instances'"
        )
    items = spec["instances"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
        n = len(items) if isinstance(items, list) else type(items).__name__
        raise ValidationError(
            f"create_batch 'instances' must be a list of 1 to {MAX_BATCH} option dicts, got {n}"
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValidationError(
                f"create_batch 'instances'[{i}] must be a dict like {{'id': ..., 'params': ...}}, "
                f"got {item!r}"
            )
    return [dict(item) for item in items]


STEP_TYPES = ("do", "sleep", "waitForEvent")


def check_restart_options(options: object) -> dict[str, Any] | None:
    """``restart()``'s options: None, ``{}``, or ``{"from": {"name", "count"?, "type"?}}``;
    the ``from`` with its defaults filled (count 1, type None: any type)."""
    example = '{"from": {"name": "step name", "count": 1, "type": "do"}}'
    if options is None:
        return None
    if not isinstance(options, dict):
        raise ValidationError(f"restart() takes options like {example}, got {options!r}")
    unknown = sorted(set(options) - {"from"})
    if unknown:
        raise ValidationError(f"unknown restart option(s) {unknown}; allowed: 'from' ({example})")
    spec = options.get("from")
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValidationError(
            f"restart 'from' must be a dict with a step 'name' like {example}, got {spec!r}"
        )
    unknown = sorted(set(spec) - {"name", "count", "type"})
    if unknown:
        raise ValidationError(
            f"unknown key(s) {unknown} in restart 'from'; allowed: 'name', 'count', 'type'"
        )
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValidationError(f"restart 'from' count must be an integer >= 1, got {count!r}")
    kind = spec.get("type")
    if kind is not None and kind not in STEP_TYPES:
        raise ValidationError(
            f"restart 'from' type must be one of {', '.join(map(repr, STEP_TYPES))}, got {kind!r}"
        )
    return {"name": spec["name"], "count": count, "type": kind}


RETENTION_KEYS = ("successRetention", "errorRetention")


def check_retention(value: object, *, id: str) -> dict[str, int] | None:
    """``create``'s ``retention``: ``{"successRetention"?, "errorRetention"?}`` durations,
    as milliseconds; None when not given."""
    if value is None:
        return None
    example = "{'successRetention': '7 days', 'errorRetention': '30 days'}"
    if not isinstance(value, dict):
        raise ValidationError(
            f"retention of instance {id!r} must be a dict like {example}, got {value!r}"
        )
    unknown = sorted(set(value) - set(RETENTION_KEYS))
    if unknown:
        raise ValidationError(
            f"unknown retention key(s) {unknown} for instance {id!r}; allowed: "
            "'successRetention', 'errorRetention'"
        )
    return {
        key: parse_duration(value[key], what=f"retention.{key} of instance {id!r}")
        for key in RETENTION_KEYS
        if value.get(key) is not None
    }
