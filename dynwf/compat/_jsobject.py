"""What ``to_js(..., dict_converter=Object.fromEntries)`` makes: a JS object, as Python sees it.

A ``JsObject`` has the attribute access of a ``JsProxy`` (``code.mainModule``) and its
``to_py()``; dynwf's Worker Loader reads it back with ``to_py()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any


class JsObject:
    """A plain JS object: attribute access for its keys, ``to_py()`` for a dict."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_fields", dict(fields or {}))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(name) from None

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
