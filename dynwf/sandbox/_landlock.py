"""Landlock (Linux 5.13+): which paths a process may read and write, and whom it may signal.

A ruleset names the kinds of access it governs; a process that restricts itself to it
keeps only the access its rules grant beneath their paths. Rulesets stack: a later one
can only take access away. Works unprivileged once ``no_new_privs`` is set, and holds
for a root process too. Syscall numbers 444-446 are the same on every architecture.
"""

from __future__ import annotations

import ctypes
import functools
import os
import struct
from collections.abc import Iterable
from pathlib import Path

from dynwf.sandbox._sys import syscall

_CREATE_RULESET, _ADD_RULE, _RESTRICT_SELF = 444, 445, 446
_VERSION = 1  # landlock_create_ruleset flag: return the ABI version
_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2  # ABI 6

READ = EXECUTE | READ_FILE | READ_DIR
_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # what a file rule may hold
_WRITES_V1 = (
    WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG
    | MAKE_SOCK | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM
)  # fmt: skip


@functools.cache
def abi() -> int:
    """The kernel's Landlock ABI version, 0 when it has none (or it is disabled)."""
    try:
        version = syscall(_CREATE_RULESET, None, 0, _VERSION)
    except OSError:
        return 0
    return max(version, 0)


def _handled(version: int) -> int:
    """Every filesystem access this ABI can govern."""
    mask = READ | _WRITES_V1
    if version >= 2:
        mask |= REFER
    if version >= 3:
        mask |= TRUNCATE
    if version >= 5:
        mask |= IOCTL_DEV
    return mask


def _writes(version: int) -> int:
    return _handled(version) & ~READ


def restrict(
    version: int,
    *,
    read: Iterable[str | Path],
    write: Iterable[str | Path],
    reads_too: bool = True,
) -> None:
    """Restrict this process (all its threads) to ``read`` paths read-only and ``write``
    paths read-write; no TCP, no signals or abstract sockets beyond itself where the ABI
    can say so. With ``reads_too=False`` the ruleset governs writes only (a later layer
    that takes write access away and leaves reads as the earlier layer set them).

    Paths that do not exist are skipped; those given to ``prepare`` cost no lookup.
    Raises OSError when the kernel refuses.
    """
    try:
        enforce(ruleset(version, read=read, write=write, reads_too=reads_too))
    finally:
        forget()


def ruleset(
    version: int,
    *,
    read: Iterable[str | Path],
    write: Iterable[str | Path],
    reads_too: bool = True,
) -> int:
    """The ruleset ``restrict`` applies, built but not enforced: a descriptor for
    ``enforce`` (building is most of the cost, so it can be done ahead)."""
    handled = _handled(version) if reads_too else _writes(version)
    fields = [handled]
    if version >= 4:
        fields.append(_NET_BIND_TCP | _NET_CONNECT_TCP)
    if version >= 6:
        fields.append(_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL)
    attr = ctypes.create_string_buffer(struct.pack(f"={len(fields)}Q", *fields))
    fd = syscall(_CREATE_RULESET, ctypes.addressof(attr), len(attr.raw), 0)
    try:
        grants = [(p, READ & handled) for p in read] + [(p, handled) for p in write]
        for path, access in grants:
            _add(fd, str(path), access)
    except BaseException:
        os.close(fd)
        raise
    return fd


def enforce(ruleset: int) -> None:
    """Restrict this process to a ruleset from ``ruleset`` (and close it)."""
    try:
        syscall(_RESTRICT_SELF, ruleset, 0)
    finally:
        os.close(ruleset)


# path -> (an O_PATH descriptor, whether it is a folder), opened once by ``prepare``.
_opened: dict[str, tuple[int, bool]] = {}


def prepare(paths: Iterable[str]) -> None:
    """Open ``paths`` now, so that the ``restrict`` of each isolate forked from this
    process finds them open (an O_PATH descriptor grants nothing by itself)."""
    for path in paths:
        if path not in _opened:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            _opened[path] = (fd, os.path.isdir(path))


def forget() -> None:
    """Close what ``prepare`` opened (in an isolate: its template keeps its own)."""
    for fd, _ in _opened.values():
        os.close(fd)
    _opened.clear()


def _add(ruleset: int, path: str, access: int) -> None:
    ready = _opened.get(path)
    if ready is not None:
        fd, is_dir = ready
        _add_fd(ruleset, fd, access if is_dir else access & _FILE_ONLY)
        return
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not there: nothing to grant
    try:
        _add_fd(ruleset, fd, access if os.path.isdir(path) else access & _FILE_ONLY)
    finally:
        os.close(fd)


def _add_fd(ruleset: int, fd: int, access: int) -> None:
    if access:
        rule = ctypes.create_string_buffer(struct.pack("=Qi", access, fd))
        syscall(_ADD_RULE, ruleset, _PATH_BENEATH, ctypes.addressof(rule), 0)


__all__ = ["READ", "abi", "enforce", "forget", "prepare", "restrict", "ruleset"]
