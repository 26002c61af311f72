"""Length-prefixed JSON messages over one stream socket, requests both ways.

A request is ``{"id": n, "op": ..., ...}``; its reply ``{"re": n, "ok": true, "value": v}``
or ``{"re": n, "ok": false, "error": {"name", "message"}}``. Either side may send
requests; a handler answers each in its own task. ``notify`` sends without a reply.

This is the hot path of every isolated step, so it is an ``asyncio.Protocol``: frames
are cut from the bytes as they arrive and dispatched in the same callback (a reply
resolves its waiter, and ``fast`` may take a message there instead of in a task), with
no reader task in between. One-way messages are not written on their own: they wait
for the next request or reply, or the end of the event-loop turn, and go out with it in
one write, so a step's result and the next step's request cost the other side a single
wake-up. With a ``Doorbell`` (a shared page), a side that expects the next message soon
spins for it (``expect``) instead of sleeping in the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dynwf.dispatch._doorbell import Doorbell

_LEN = struct.Struct(">I")
Handler = Callable[[dict[str, Any]], Awaitable[Any]]
# Takes a message in the callback that read it: True when it did (a request's reply then
# goes through ``Connection.answer``, at once or later); False leaves it to ``Handler``.
FastHandler = Callable[[dict[str, Any]], bool]
MAX_FRAME = 256 * 1024 * 1024  # a larger length prefix means a corrupt stream


log = logging.getLogger("dynwf.dispatch")


class ConnectionLost(Exception):
    """The other side went away (its process exited or was killed)."""


class RemoteError(Exception):
    """The other side answered a request with an error."""

    def __init__(self, error: dict[str, str]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


async def _refuse(msg: dict[str, Any]) -> Any:
    raise RuntimeError(f"no handler for {msg.get('op')!r} yet")


class Connection(asyncio.Protocol):
    """One end of the message stream. Open it with ``await Connection.open(sock, handler)``."""

    def __init__(self, handler: Handler = _refuse, fast: FastHandler | None = None) -> None:
        self.handler, self.fast = handler, fast
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._transport: asyncio.Transport | None = None
        self._sock: socket.socket | None = None  # the socket ``open`` was given
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Spinning for the peer's next message (``expect``): the peer's write count when
        # we last wrote, when that was, and how long the peer then took to write back.
        self.doorbell: Doorbell | None = None
        self._mark = 0
        self._sent_at: float | None = None
        self._last_gap = 0.0
        self._spin: asyncio.Handle | None = None
        self.spins = 0  # spins made, and how many of them the peer's write ended
        self.spin_hits = 0

    @classmethod
    async def open(
        cls, sock: socket.socket, handler: Handler = _refuse, fast: FastHandler | None = None
    ) -> Connection:
        """Serve a connected stream socket (one end of a ``socket.socketpair()``)."""
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_unix_connection(lambda: cls(handler, fast), sock=sock)
        conn._sock = sock
        return conn

    def peer_closed(self) -> bool:
        """Whether the other side has closed its end, asked of the socket now: a process
        that died since the loop last looked is seen before a message is sent to it."""
        if self.closed.done():
            return True
        if self._sock is None:
            return False
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # open, nothing to read
        except OSError:
            return True

    # -- sending ----------------------------------------------------------------------
    def _queue(self, msg: dict[str, Any]) -> None:
        if self.closed.done():
            raise ConnectionLost("the isolate is gone")
        data = json.dumps(msg, separators=(",", ":")).encode()
        self._out.append(_LEN.pack(len(data)))
        self._out.append(data)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._out and self._transport is not None and not self._transport.is_closing():
            bell = self.doorbell
            if bell is None:
                self._transport.write(b"".join(self._out))
            else:
                self._mark = bell.mark()
                self._transport.write(b"".join(self._out))
                bell.ring()
                if self._sent_at is None:
                    self._sent_at = time.perf_counter()
        self._out.clear()

    def _send(self, msg: dict[str, Any]) -> None:
        self._queue(msg)
        self._flush()

    async def request(
        self, msg: dict[str, Any], *, id: int | None = None, soon: float = 0.0
    ) -> Any:
        """Send ``msg`` and return its reply; ``soon``: spin that long for it (``expect``)."""
        n = id if id is not None else next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[n] = fut
        try:
            self._send({**msg, "id": n})
            if soon:
                self.expect(soon)
            return await fut
        finally:
            self._waiting.pop(n, None)

    def send_request(
        self, msg: dict[str, Any], *, id: int | None = None, flush: bool = True
    ) -> asyncio.Future[Any]:
        """Send ``msg`` now and return the future of its reply (``request`` without the
        wait: several requests can be in flight, and go out in one write with
        ``flush=False`` on all but the last)."""
        n = id if id is not None else next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue({**msg, "id": n})
        self._waiting[n] = fut  # removed when its reply comes (``_dispatch``)
        if flush:
            self._flush()
        return fut

    def request_id(self) -> int:
        return next(self._ids)

    def answer(self, n: int, value: Any = None, error: BaseException | None = None) -> None:
        """Reply to request ``n`` (taken by ``fast``); nothing if the other side is gone."""
        reply: dict[str, Any] = (
            {"re": n, "ok": True, "value": value}
            if error is None
            else {"re": n, "ok": False, "error": error_data(error)}
        )
        with contextlib.suppress(ConnectionLost):
            self._send(reply)

    def expect(self, budget_s: float) -> None:
        """The peer should write back within ``budget_s``: spin for that, not sleep.

        The spin runs once this loop turn's ready callbacks have run, so other tasks
        still send first, and it ends as soon as the peer writes. Nothing happens without
        a doorbell, or when the peer's last answer took longer than the budget (a slow
        callback, a busy engine): then waiting in the kernel costs nothing extra.
        """
        if self.doorbell is None or self._spin is not None or self._last_gap > budget_s:
            return
        self._spin = asyncio.get_running_loop().call_soon(self._spin_now, budget_s)

    def _spin_now(self, budget_s: float) -> None:
        self._spin = None
        if self.doorbell is not None and not self.closed.done():
            self.spins += 1
            self.spin_hits += self.doorbell.wait(self._mark, budget_s)

    def notify(self, msg: dict[str, Any], *, now: bool = False) -> None:
        """Send ``msg`` one way, with the next request or reply, at the latest this loop
        turn; ``now``: written at once (with what is queued before it)."""
        self._queue(msg)
        if now:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    # -- receiving (asyncio.Protocol) -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # an asyncio or uvloop transport

    def data_received(self, data: bytes) -> None:
        if self._sent_at is not None:
            self._last_gap = time.perf_counter() - self._sent_at
            self._sent_at = None
        buf = self._buf
        buf += data
        start, end = 0, len(buf)
        try:
            while end - start >= _LEN.size:
                (size,) = _LEN.unpack_from(buf, start)
                if size > MAX_FRAME:
                    raise ValueError(f"frame of {size} bytes")
                if end - start - _LEN.size < size:
                    break
                body = start + _LEN.size
                start = body + size
                self._dispatch(json.loads(buf[body:start]))
        except (ValueError, TypeError, KeyError) as exc:  # not our protocol: unusable stream
            log.error("dropping a corrupt message stream: %s", exc)
            del buf[:]
            if self._transport is not None:
                self._transport.close()
            return
        del buf[:start]

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            raise TypeError(f"a message must be a JSON object, got {type(msg).__name__}")
        if "re" in msg:
            fut = self._waiting.pop(msg["re"], None)
            if fut is not None and not fut.done():
                if msg.get("ok"):
                    fut.set_result(msg.get("value"))
                else:
                    fut.set_exception(RemoteError(dict(msg.get("error") or {})))
            return
        n = msg.get("id")
        if n is None and msg.get("op") == "cancel":
            task = self._tasks.get(msg.get("target"))  # type: ignore[arg-type]
            if task is not None:
                task.cancel()
            return
        if self.fast is not None:
            try:
                if self.fast(msg):
                    return
            except Exception as exc:
                if n is None:
                    _log_one_way(msg, exc)
                else:
                    self.answer(n, error=exc)
                return
        task = asyncio.get_running_loop().create_task(self._answer(msg))
        if n is not None:
            self._tasks[n] = task

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost()

    def _lost(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        if self._spin is not None:
            self._spin.cancel()
            self._spin = None
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionLost("the isolate process exited"))
        for task in self._tasks.values():
            task.cancel()

    async def _answer(self, msg: dict[str, Any]) -> None:
        n = msg.get("id")
        try:
            value = await self.handler(msg)
        except asyncio.CancelledError:
            if n is not None:
                self._tasks.pop(n, None)
            raise
        except BaseException as exc:  # answered as data; the other side re-raises it
            if n is None:  # a one-way message: nobody to answer, so say it here
                _log_one_way(msg, exc)
            else:
                self._tasks.pop(n, None)
                self.answer(n, error=exc)
        else:
            if n is not None:
                self._tasks.pop(n, None)
                self.answer(n, value)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._lost()


def _log_one_way(msg: dict[str, Any], exc: BaseException) -> None:
    log.warning(
        "one-way %s message failed: %s: %s",
        msg.get("method") or msg.get("op"),
        type(exc).__name__,
        exc,
    )


def error_data(exc: BaseException) -> dict[str, str]:
    from dynwf.workers.workflows import NonRetryableError

    if isinstance(exc, NonRetryableError):
        return {"name": "NonRetryableError", "message": str(exc)}
    from dynwf.engine import error_to_dict

    return dict(error_to_dict(exc))
