"""The libc calls the sandbox makes through ctypes (Python 3.11 has no ``os.unshare``)."""

from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

PR_SET_NO_NEW_PRIVS = 38
PR_GET_SECCOMP = 21
CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


@functools.cache
def libc() -> ctypes.CDLL:
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def syscall(number: int, *args: Any) -> int:
    call_args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    return _check(libc().syscall(ctypes.c_long(number), *call_args), f"syscall {number}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    args = (ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5))
    return _check(libc().prctl(ctypes.c_int(option), *args), f"prctl {option}")


def unshare(flags: int) -> None:
    _check(libc().unshare(ctypes.c_int(flags)), "unshare")
