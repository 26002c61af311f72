"""The engine-isolate message stream: framing, coalescing, fast handlers, doorbell spins."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dynwf.dispatch._doorbell import Doorbell
from dynwf.dispatch._isolate import Isolate, IsolateLimits, spawn
from dynwf.dispatch._wire import MAX_FRAME, Connection, ConnectionLost, RemoteError

needs_memfd = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="Linux memfd only")


def frame(msg: Any) -> bytes:
    data = json.dumps(msg).encode()
    return struct.pack(">I", len(data)) + data


def frames(data: bytes) -> list[Any]:
    out, at = [], 0
    while at < len(data):
        (size,) = struct.unpack_from(">I", data, at)
        out.append(json.loads(data[at + 4 : at + 4 + size]))
        at += 4 + size
    return out


class Peer:
    """A Connection on one end of a socketpair, a raw socket on the other."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.raw, self._ours = socket.socketpair()
        self.raw.settimeout(60)

    async def open(self, fast: Any = None) -> Connection:
        async def handle(msg: dict[str, Any]) -> Any:
            self.seen.append(msg)
            return {"echo": msg.get("n")}

        return await Connection.open(self._ours, handle, fast)

    async def recv(self, size: int) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(None, self.raw.recv, size)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    yield p
    p.raw.close()


async def until(cond: Any, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_wire_frames_joined_or_split_each_arrive_once_in_order(peer: Peer) -> None:
    conn = await peer.open()
    peer.raw.sendall(frame({"op": "x", "n": 1}) + frame({"op": "x", "n": 2}))
    for byte in frame({"op": "x", "n": 3}):
        peer.raw.sendall(bytes([byte]))
        await asyncio.sleep(0)
    await until(lambda: len(peer.seen) == 3)
    assert [m["n"] for m in peer.seen] == [1, 2, 3]
    await conn.close()


async def test_wire_large_frame_arrives_whole(peer: Peer) -> None:
    conn = await peer.open()
    big = "x" * (5 * 1024 * 1024)
    data = frame({"op": "x", "n": big})
    await asyncio.get_running_loop().run_in_executor(None, peer.raw.sendall, data)
    await until(lambda: len(peer.seen) == 1)
    assert peer.seen[0]["n"] == big
    await conn.close()


@pytest.mark.parametrize(
    "garbage",
    [struct.pack(">I", MAX_FRAME + 1), frame("a string")[:-1] + b"{", frame([1, 2])],
    ids=["oversized-length", "not-json", "not-an-object"],
)
async def test_wire_corrupt_stream_closes_the_connection(peer: Peer, garbage: bytes) -> None:
    conn = await peer.open()
    pending = asyncio.ensure_future(conn.request({"op": "wait"}))
    peer.raw.sendall(garbage)
    await asyncio.wait_for(conn.closed, 60)
    with pytest.raises(ConnectionLost):
        await pending


@needs_memfd
async def test_wire_one_way_message_goes_out_with_the_next_request(peer: Peer) -> None:
    conn = await peer.open()
    made = Doorbell.create()
    assert made is not None
    conn.doorbell, fd = made
    writes = Doorbell.attach(fd)  # the other side's view counts this side's writes

    async def result_then_next() -> Any:  # as a step's result, then the next step
        conn.notify({"op": "result", "n": 1})
        return await conn.request({"op": "next", "n": 2})

    pending = asyncio.ensure_future(result_then_next())
    sent = frames(await peer.recv(65536))
    assert [m["op"] for m in sent] == ["result", "next"]
    assert writes.mark() == 1  # both frames in one write
    peer.raw.sendall(frame({"re": sent[1]["id"], "ok": True, "value": "go"}))
    assert await pending == "go"
    await conn.close()
    writes.close()
    conn.doorbell.close()


async def test_wire_one_way_message_alone_goes_out_at_the_end_of_the_turn(peer: Peer) -> None:
    conn = await peer.open()
    conn.notify({"op": "result", "n": 1})
    assert frames(await peer.recv(65536)) == [{"op": "result", "n": 1}]
    await conn.close()


async def test_wire_fast_handler_answers_later_and_declines_to_the_handler(peer: Peer) -> None:
    taken: list[int] = []
    conn: Connection

    def fast(msg: dict[str, Any]) -> bool:
        if msg["op"] != "fast":
            return False
        taken.append(msg["id"])
        asyncio.get_running_loop().call_later(0.02, conn.answer, msg["id"], "later")
        return True

    conn = await peer.open(fast)
    peer.raw.sendall(frame({"op": "fast", "id": 7}) + frame({"op": "slow", "id": 8, "n": 8}))
    replies: list[Any] = []
    while len(replies) < 2:
        replies += frames(await peer.recv(65536))
    assert taken == [7] and [m["op"] for m in peer.seen] == ["slow"]
    assert sorted(replies, key=lambda r: r["re"]) == [
        {"re": 7, "ok": True, "value": "later"},
        {"re": 8, "ok": True, "value": {"echo": 8}},
    ]
    await conn.close()


async def test_wire_fast_handler_error_is_the_reply(peer: Peer) -> None:
    def fast(msg: dict[str, Any]) -> bool:
        raise LookupError("no such run")

    conn = await peer.open(fast)
    peer.raw.sendall(frame({"op": "x", "id": 1}))
    reply = frames(await peer.recv(65536))
    assert reply == [
        {"re": 1, "ok": False, "error": {"name": "LookupError", "message": "no such run"}}
    ]
    await conn.close()


async def test_wire_error_reply_raises_and_peer_exit_fails_pending(peer: Peer) -> None:
    conn = await peer.open()
    failing = asyncio.ensure_future(conn.request({"op": "x"}))
    pending = asyncio.ensure_future(conn.request({"op": "y"}))
    await asyncio.sleep(0)
    ids = [m["id"] for m in frames(await peer.recv(65536))]
    while len(ids) < 2:
        ids += [m["id"] for m in frames(await peer.recv(65536))]
    peer.raw.sendall(frame({"re": ids[0], "ok": False, "error": {"name": "E", "message": "no"}}))
    with pytest.raises(RemoteError, match="no"):
        await failing
    peer.raw.close()
    with pytest.raises(ConnectionLost):
        await pending
    assert conn.closed.done()


async def test_wire_peer_closed_is_seen_before_the_loop_reads_the_end(peer: Peer) -> None:
    # An isolate that died since the loop last looked: a request must not be sent to it
    # as if it were alive (the loader asks ``alive`` first, and starts a new one).
    conn = await peer.open()
    peer.raw.sendall(frame({"op": "ping-less", "n": 1}))
    await until(lambda: len(peer.seen) == 1)
    assert not conn.peer_closed()  # open, nothing unread
    peer.raw.close()
    assert conn.peer_closed()  # with no loop turn in between
    assert not conn.closed.done()  # the loop itself has not seen it yet
    await until(lambda: conn.closed.done())
    assert conn.peer_closed()


# -- the doorbell -----------------------------------------------------------------------
RINGER = textwrap.dedent(
    """
    import sys, time
    from dynwf.dispatch._doorbell import Doorbell
    bell = Doorbell.attach(int(sys.argv[1]))
    print("hint", int(bell.hint), flush=True)
    time.sleep(0.05)
    bell.ring()
    """
)


@needs_memfd
def test_doorbell_wait_ends_when_the_other_process_rings() -> None:
    made = Doorbell.create()
    assert made is not None
    bell, fd = made
    bell.hint = True
    mark = bell.mark()
    child = subprocess.Popen(
        [sys.executable, "-c", RINGER, str(fd)], pass_fds=(fd,), stdout=subprocess.PIPE, text=True
    )
    os.close(fd)
    try:
        assert bell.wait(mark, budget_s=60.0) is True
        assert bell.mark() == mark + 1
        assert bell.wait(bell.mark(), budget_s=0.01) is False  # nobody rings again
        out, _ = child.communicate(timeout=60)
        assert out.split() == ["hint", "1"]
    finally:
        bell.close()


@pytest.fixture
async def isolate() -> AsyncIterator[Isolate]:
    async def refuse(msg: dict[str, Any]) -> Any:
        raise RuntimeError("unexpected")

    iso = await Isolate.connect(await spawn(IsolateLimits()), refuse)
    yield iso
    await iso.close()


@needs_memfd
async def test_isolate_gets_a_doorbell_and_spins_only_for_quick_answers(isolate: Isolate) -> None:
    conn = isolate.conn
    assert conn.doorbell is not None
    assert await conn.request({"op": "ping"}) == "pong"  # no spin asked
    assert conn.spins == 0
    # A budget no answer can miss, even on a busy machine (a hang guard, not a timing).
    for _ in range(20):
        assert await conn.request({"op": "ping"}, soon=120.0) == "pong"
    assert conn.spins == 20 and conn.spin_hits == 20  # every spin ended by the answer
    # The last answer took longer than a microsecond: a budget that short is not worth it.
    assert await conn.request({"op": "ping"}, soon=1e-6) == "pong"
    assert conn.spins == 20
