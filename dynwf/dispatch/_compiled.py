"""Compiled tenant modules, kept by the engine: an isolate loading code seen before
executes the code object instead of compiling the source again.

Compiling is the largest part of a cold load's import (about 0.4 ms for a 30-line module
in a warm process, more in a freshly forked isolate). Cloudflare caches a Worker's
compiled code too (V8's code cache; Python Workers load from a snapshot taken at
deploy). The engine compiles, never an isolate: what an isolate sends is untrusted,
and a code object is run as given. A source is compiled once a second load sends it
(code loaded once, the usual case when every tenant's code differs, costs the engine
nothing), off the cold path (``COMPILE_DELAY_S`` later), and then sent with every
later load of the same source, by any tenant, as ``marshal`` data under the module's
name; the isolate sets its own folder as the file name (``placed``), so tracebacks
name the file it wrote.

The engine compiles under a placeholder file name (``PLACEHOLDER``). marshal writes a
compiled module's file name once, as a short string, and every nested code object
refers back to it, so ``placed`` renames the whole module by replacing those few bytes
before it loads them; rebuilding each code object with ``code.replace`` (what it falls
back to) was the largest part of a cold load's import.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import marshal
import sys
import types
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

# Sources larger than this are compiled by the isolate only: a compile holds the
# engine's event loop (about 0.4 ms per KB).
MAX_SOURCE_CHARS = 32 * 1024
# What the cache may hold, in bytes of marshal data; least recently used go first.
MAX_BYTES = 8 * 1024 * 1024
# Seconds after the load that saw a source a second time before the engine compiles it.
COMPILE_DELAY_S = 0.2
# How many sources seen once are remembered (as digests), waiting for a second load.
MAX_SEEN = 4096

Key = tuple[str, bytes]
# The file name the engine compiles under, replaced by the isolate's own (``placed``):
# ASCII and shorter than 256 bytes, so marshal writes it as a short string.
PLACEHOLDER = "<dynwf: module file, renamed by the isolate>"
_RECORD = bytes([len(PLACEHOLDER)]) + PLACEHOLDER.encode()


def _key(name: str, source: str) -> Key:
    return name, hashlib.blake2b(source.encode(), digest_size=16).digest()


class CompiledModules:
    """marshal data of compiled modules, by module name and source digest (LRU)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[Key, str] = OrderedDict()
        self._bytes = 0
        self._seen: OrderedDict[Key, None] = OrderedDict()
        self._pending: dict[Key, str] = {}
        self._handle: asyncio.TimerHandle | None = None

    def lookup(self, modules: Mapping[str, Any]) -> dict[str, str]:
        """``{module name: marshal data (base64)}`` for the Python modules compiled
        already; those seen before are compiled soon, for the next load that sends them."""
        found: dict[str, str] = {}
        for name, source in modules.items():
            if not isinstance(source, str) or not name.endswith(".py"):
                continue
            if len(source) > MAX_SOURCE_CHARS:
                continue
            key = _key(name, source)
            data = self._data.get(key)
            if data is not None:
                self._data.move_to_end(key)
                found[name] = data
            elif key in self._seen:
                del self._seen[key]
                self._pending[key] = source
                self._schedule()
            elif key not in self._pending:
                self._seen[key] = None
                if len(self._seen) > MAX_SEEN:
                    self._seen.popitem(last=False)
        return found

    def _schedule(self) -> None:
        if self._handle is None:
            loop = asyncio.get_running_loop()
            self._handle = loop.call_later(COMPILE_DELAY_S, self._compile_pending)

    def _compile_pending(self) -> None:
        self._handle = None
        pending, self._pending = self._pending, {}
        for key, source in pending.items():
            try:
                code = compile(source, PLACEHOLDER, "exec", dont_inherit=True)
            except (SyntaxError, ValueError):
                continue  # the isolate compiles it, and reports the error as it should
            data = base64.b64encode(marshal.dumps(code)).decode()
            self._data[key] = data
            self._bytes += len(data)
        while self._bytes > self.max_bytes and self._data:
            _, data = self._data.popitem(last=False)
            self._bytes -= len(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pending.clear()
        self._seen.clear()


def optimize_level() -> int:
    """The engine's ``-O`` level: an isolate runs compiled code only at the same one."""
    return sys.flags.optimize


def placed(data: str, path: str) -> types.CodeType:
    """The code object of ``lookup``'s data, with ``path`` as its file name throughout."""
    raw = base64.b64decode(data)
    name = path.encode() if path.isascii() else b""
    if 0 < len(name) < 256 and raw.count(_RECORD) == 1:
        # The placeholder's one short-string record (its length byte, then its bytes)
        # becomes the path's: the type byte before it is the same for both.
        code = marshal.loads(raw.replace(_RECORD, bytes([len(name)]) + name))
        if isinstance(code, types.CodeType) and code.co_filename == path:
            return code
    code = marshal.loads(raw)
    if not isinstance(code, types.CodeType):
        raise TypeError("compiled module data is not a code object")
    return _renamed(code, path)


def _renamed(code: types.CodeType, path: str) -> types.CodeType:
    consts = tuple(
        _renamed(c, path) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=path, co_consts=consts)
