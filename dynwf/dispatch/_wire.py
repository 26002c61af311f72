"""Length-prefixed JSON messages over a pair of asyncio streams, requests both ways.

A request is ``{"id": n, "op": ..., ...}``; its reply ``{"re": n, "ok": true, "value": v}``
or ``{"re": n, "ok": false, "error": {"name", "message"}}``. Either side may send
requests; a handler answers each in its own task. ``notify`` sends without a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import Any

_LEN = struct.Struct(">I")
Handler = Callable[[dict[str, Any]], Awaitable[Any]]


log = logging.getLogger("dynwf.dispatch")


class ConnectionLost(Exception):
    """The other side went away (its process exited or was killed)."""


class RemoteError(Exception):
    """The other side answered a request with an error."""

    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


class Connection:
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handler: Handler
    ) -> None:
        self._reader, self._writer, self._handler = reader, writer, handler
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader_task = asyncio.create_task(self._read_loop())

    def _send(self, msg: dict[str, Any]) -> None:
        if self.closed.done():
            raise ConnectionLost("the isolate is gone")
        data = json.dumps(msg, separators=(",", ":")).encode()
        self._writer.write(_LEN.pack(len(data)) + data)

    async def request(self, msg: dict[str, Any], *, id: int | None = None) -> Any:
        n = id if id is not None else next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[n] = fut
        try:
            self._send({**msg, "id": n})
            return await fut
        finally:
            self._waiting.pop(n, None)

    def request_id(self) -> int:
        return next(self._ids)

    def notify(self, msg: dict[str, Any]) -> None:
        self._send(msg)

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(_LEN.size)
                (size,) = _LEN.unpack(head)
                msg = json.loads(await self._reader.readexactly(size))
                if "re" in msg:
                    fut = self._waiting.get(msg["re"])
                    if fut is not None and not fut.done():
                        if msg["ok"]:
                            fut.set_result(msg.get("value"))
                        else:
                            fut.set_exception(RemoteError(msg["error"]))
                elif msg.get("op") == "cancel":
                    task = self._tasks.get(msg["target"])
                    if task is not None:
                        task.cancel()
                else:
                    n = msg.get("id")
                    task = asyncio.create_task(self._answer(msg))
                    if n is not None:
                        self._tasks[n] = task
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._lost()

    def _lost(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionLost("the isolate process exited"))
        for task in self._tasks.values():
            task.cancel()

    async def _answer(self, msg: dict[str, Any]) -> None:
        n = msg.get("id")
        try:
            value = await self._handler(msg)
        except asyncio.CancelledError:
            if n is not None:
                self._tasks.pop(n, None)
            raise
        except BaseException as exc:  # answered as data; the other side re-raises it
            if n is None:  # a one-way message: nobody to answer, so say it here
                log.warning("one-way %s message failed: %s: %s", msg.get("method") or msg.get("op"),
                            type(exc).__name__, exc)
            reply: dict[str, Any] = {"re": n, "ok": False, "error": error_data(exc)}
        else:
            reply = {"re": n, "ok": True, "value": value}
        if n is not None:
            self._tasks.pop(n, None)
            with contextlib.suppress(ConnectionLost):
                self._send(reply)

    async def close(self) -> None:
        self._writer.close()
        self._reader_task.cancel()
        self._lost()


def error_data(exc: BaseException) -> dict[str, str]:
    from dynwf.workers.workflows import NonRetryableError

    name = "NonRetryableError" if isinstance(exc, NonRetryableError) else type(exc).__name__
    return {"name": name, "message": str(exc)}
