"""Clear errors for what a Worker cannot do, raised before the kernel refuses it.

An audit hook (PEP 578) sees ``open``, ``socket``, process and signal calls and raises a
``PermissionError`` that says what Cloudflare would not allow and what to use instead.
It is not the boundary: code that goes around it (ctypes, a C extension) meets the
kernel's refusal (Landlock, seccomp) as a bare ``EPERM``/``EACCES``. A hook cannot be
removed once added, so it is added only in an isolate's own process.

Python threads fail to start as they do in Pyodide, which Python Workers run on
(``RuntimeError: can't start new thread``; Cloudflare lists ``threading`` as "not
functional"). Only Python's own starters are replaced: the kernel still lets threads
start, for native libraries that run their own.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
from collections.abc import Iterable
from typing import Any

_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
     "os.forkpty", "pty.spawn", "os.startfile"}
)  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
PREFIX = "dynwf sandbox"


@functools.cache
def _resolved(path: str) -> tuple[str, str]:
    return os.path.abspath(path), os.path.realpath(path)


def resolve_all(paths: Iterable[str]) -> None:
    """Resolve ``paths`` now (cached), so that each isolate need not."""
    for p in paths:
        _resolved(p)


class _Paths:
    """Folders, as given and resolved, and whether a path lies beneath one."""

    def __init__(self, paths: Iterable[str]) -> None:
        roots: set[str] = set()
        for p in paths:
            roots.update(_resolved(p))
        self.roots = tuple(sorted(roots))

    def holds(self, path: str) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in self.roots)


class Hook:
    """The hook's state: which paths may be read and written."""

    def __init__(self, pid: int, read: Iterable[str], write: Iterable[str]) -> None:
        self.pid = pid
        self.write = _Paths(write)
        self.read = _Paths([*read, *self.write.roots])

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            self._open(args)
        elif event == "socket.__new__" and args[1] != socket.AF_UNIX:
            # (AF_UNIX passes: the event also fires when Python wraps a socket it has,
            # e.g. a socketpair's ends; a new one then meets seccomp's EPERM.)
            raise PermissionError(
                f"{PREFIX}: a Worker cannot open sockets (Cloudflare Workers have none); "
                "reach HTTP services with `from workers import fetch`"
            )
        elif event in _PROCESS_EVENTS:
            raise PermissionError(
                f"{PREFIX}: a Worker cannot start processes ({event}); Cloudflare Workers "
                "have no processes"
            )
        elif (event == "os.kill" and args[0] != self.pid) or event == "os.killpg":
            raise PermissionError(
                f"{PREFIX}: a Worker cannot signal other processes ({event}{args!r})"
            )

    def _open(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = (*args, None, None, None)[:3]
        if not isinstance(path, (str, bytes)):
            return  # an open file descriptor
        text = os.path.abspath(os.fsdecode(path))
        writes = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
            isinstance(mode, str) and any(c in mode for c in "wax+")
        )
        paths = self.write if writes else self.read
        if paths.holds(text) or paths.holds(os.path.realpath(text)):
            return
        what = "write" if writes else "read"
        raise PermissionError(
            f"{PREFIX}: a Worker cannot {what} {text!r}: it sees its own modules and the "
            "Python runtime only (Cloudflare Workers have no filesystem beyond their "
            "modules); DYNWF_SANDBOX_ALLOW opens folders for tests"
        )


# ``_thread``'s starters across Python versions, and ``threading``'s own references to them.
_THREAD_STARTERS = ("start_new_thread", "start_new", "start_joinable_thread")
_THREADING_STARTERS = ("_start_new_thread", "_start_joinable_thread")


def _no_threads(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(
        f"can't start new thread ({PREFIX}: Python Workers run on WebAssembly, where "
        "threading is not functional; run concurrent work as asyncio tasks)"
    )


def install(hook: Hook) -> None:
    sys.addaudithook(hook)
    import _thread
    import threading

    for name in _THREAD_STARTERS:
        if hasattr(_thread, name):
            setattr(_thread, name, _no_threads)
    for name in _THREADING_STARTERS:
        if hasattr(threading, name):
            setattr(threading, name, _no_threads)
