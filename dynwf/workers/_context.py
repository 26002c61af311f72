"""The ``ctx`` an entrypoint gets: an ExecutionContext with ``waitUntil``, ``props``, ``exports``.

Cloudflare never passes ``None`` here; neither does dynwf.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import Any

from dynwf.compat._jsobject import JsObject


class ExecutionContext:
    """``ctx.waitUntil(awaitable)`` keeps work going after a response; ``ctx.props`` are
    the props the caller bound (a JS object: ``ctx.props.to_py()``); ``ctx.exports`` the
    classes this worker's main module exports."""

    def __init__(self, *, props: Mapping[str, Any] | None = None, exports: Any = None) -> None:
        self.props = JsObject(props or {})
        self.exports = exports if exports is not None else JsObject()
        self._pending: set[asyncio.Future[Any]] = set()

    def waitUntil(self, awaitable: Any) -> None:
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"waitUntil needs an awaitable, got {type(awaitable).__name__}")
        fut = asyncio.ensure_future(awaitable)
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)

    def passThroughOnException(self) -> None:
        """Accepted for compatibility: dynwf has no origin to fall back to."""
