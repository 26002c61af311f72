"""JS values as Python sees them in Pyodide: a plain object (``JsObject``), a ``Map`` and a ``Date``.

A ``JsObject`` is what ``to_js(..., dict_converter=Object.fromEntries)`` makes and what a
JS API hands Python unconverted (a ``wait_for_event`` result in a tenant): it has the
attribute access of a ``JsProxy`` (``code.mainModule``) and its ``to_py()``, and, like
a ``JsProxy`` of a plain object, no ``[key]`` and no dict methods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

# What to write instead of reading a JS object as a dict (Pyodide says only "not subscriptable").
_READ_IT = (
    "it is a JS object (a JsProxy on Cloudflare), not a dict: convert it first with "
    "`python_from_rpc(value)` (`from workers import python_from_rpc`) or `value.to_py()`, "
    "or read one field as an attribute (`value.payload`)"
)
_DICT_METHODS = frozenset({"get", "keys", "items", "values", "copy", "pop", "setdefault", "update"})


class JsObject:
    """A plain JS object: attribute access for its keys, ``to_py()`` for a dict."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_fields", dict(fields or {}))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            if name in _DICT_METHODS:
                raise AttributeError(f"JS object has no method {name!r}: {_READ_IT}") from None
            raise AttributeError(name) from None

    def __getitem__(self, key: Any) -> Any:
        raise TypeError(f"'JsProxy' object is not subscriptable ([{key!r}]): {_READ_IT}")

    def __setattr__(self, name: str, value: Any) -> None:
        self._fields[name] = value

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __repr__(self) -> str:
        return f"[object Object] {self._fields!r}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsObject) and self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def as_object_map(self) -> JsObject:
        return self

    def to_py(self, **_options: Any) -> dict[str, Any]:
        """A dict, converted deeply (nested objects and arrays too)."""
        return {k: to_py(v) for k, v in self._fields.items()}


class JsDate:
    """A JS ``Date``: what a JS API gives Python for a timestamp it does not convert.

    ``python_from_rpc`` turns it into a naive ``datetime`` (UTC), as Cloudflare's SDK does.
    """

    __slots__ = ("_ms",)

    def __init__(self, moment: datetime) -> None:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        self._ms = aware.timestamp() * 1000

    def getTime(self) -> float:
        return self._ms

    valueOf = getTime

    def toISOString(self) -> str:
        moment = datetime.fromtimestamp(self._ms / 1000, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_datetime(self) -> datetime:
        """The naive UTC ``datetime`` Cloudflare's ``python_from_rpc`` makes of a Date."""
        return datetime.fromtimestamp(self._ms / 1000, UTC).replace(tzinfo=None)

    def __repr__(self) -> str:
        return f"[object Date] {self.toISOString()}"


def to_py(value: Any) -> Any:
    if isinstance(value, JsObject):
        return value.to_py()
    if isinstance(value, list):
        return [to_py(v) for v in value]
    return value


def convert(value: Any, dict_converter: Callable[[Any], Any] | None) -> Any:
    """``value`` as ``to_js`` would leave it: dicts become objects, deeply."""
    if isinstance(value, Mapping) and not isinstance(value, JsObject):
        entries = [(str(k), convert(v, dict_converter)) for k, v in value.items()]
        return dict_converter(entries) if dict_converter is not None else JsMap(entries)
    if isinstance(value, (list, tuple)):
        return [convert(v, dict_converter) for v in value]
    return value


class JsMap(dict[str, Any]):
    """A JS ``Map``: what ``to_js`` makes of a dict without ``dict_converter``.

    Workers read fields of an object (``code.mainModule``), which a Map lacks, so the
    Worker Loader refuses one with the fix (``dict_converter=Object.fromEntries``).
    """

    def to_py(self, **_options: Any) -> dict[str, Any]:
        return {k: to_py(v) for k, v in self.items()}
