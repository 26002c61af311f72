"""``from js import Object``: the JS globals a dispatcher uses to build Worker Loader code."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dynwf.compat._jsobject import JsObject


class Object:
    """JS ``Object``: ``Object.fromEntries(pairs)`` and ``Object.new()``."""

    @staticmethod
    def fromEntries(entries: Iterable[Any]) -> JsObject:
        return JsObject({str(k): v for k, v in entries})

    @staticmethod
    def new() -> JsObject:
        return JsObject()


__all__ = ["Object"]
