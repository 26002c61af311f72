"""A seccomp filter: the system calls a Worker has no use for fail with EPERM.

No new processes (``fork``, ``vfork``, ``clone`` without ``CLONE_THREAD``, ``execve``),
no new sockets, no signals to any process but itself, no tracing or reading other
processes' memory, no namespaces, mounts, keyrings, BPF or io_uring (whose operations
would pass by this filter). Threads still start, for native libraries that run their
own (Python's thread starters fail in the isolate: ``_hook``): ``clone3`` answers ENOSYS,
so the C library falls back to ``clone``, whose flags the filter can read. Everything
else is allowed. Built as classic BPF by hand (no libseccomp), for x86_64 and aarch64.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
from collections.abc import Callable

from dynwf.sandbox._sys import syscall

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_KILL_PROCESS = 0x80000000
_SET_MODE_FILTER, _FLAG_TSYNC = 1, 1
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000

# Per architecture: audit arch, the seccomp syscall, the syscalls a Worker never needs,
# clone, clone3, and the signal-sending calls whose first argument is the target pid.
_DENIED_NAMES = (
    "socket", "fork", "vfork", "execve", "execveat", "tkill", "ptrace", "process_vm_readv",
    "process_vm_writev", "pidfd_open", "pidfd_send_signal", "pidfd_getfd", "unshare",
    "setns", "mount", "umount2", "pivot_root", "chroot", "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter",
    "io_uring_register", "kcmp", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount",
    "fspick", "mount_setattr", "name_to_handle_at", "open_by_handle_at",
)  # fmt: skip
_TABLES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "seccomp": 317, "socket": 41, "fork": 57, "vfork": 58, "execve": 59,
            "execveat": 322, "clone": 56, "clone3": 435, "kill": 62, "tkill": 200,
            "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "ptrace": 101,
            "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_open": 434,
            "pidfd_send_signal": 424, "pidfd_getfd": 438, "unshare": 272, "setns": 308,
            "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "keyctl": 250,
            "add_key": 248, "request_key": 249, "bpf": 321, "perf_event_open": 298,
            "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
            "io_uring_register": 427, "kcmp": 312, "open_tree": 428, "move_mount": 429,
            "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
            "mount_setattr": 442, "name_to_handle_at": 303, "open_by_handle_at": 304,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "seccomp": 277, "socket": 198, "execve": 221, "execveat": 281, "clone": 220,
            "clone3": 435, "kill": 129, "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138,
            "rt_tgsigqueueinfo": 240, "ptrace": 117, "process_vm_readv": 270,
            "process_vm_writev": 271, "pidfd_open": 434, "pidfd_send_signal": 424,
            "pidfd_getfd": 438, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
            "pivot_root": 41, "chroot": 51, "keyctl": 219, "add_key": 217, "request_key": 218,
            "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425,
            "io_uring_enter": 426, "io_uring_register": 427, "kcmp": 272, "open_tree": 428,
            "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
            "mount_setattr": 442, "name_to_handle_at": 264, "open_by_handle_at": 265,
        },
    ),
}  # fmt: skip
_SIGNALS = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo")
_MACHINE = os.uname().machine


def supported() -> bool:
    """Whether dynwf has a syscall table for this machine."""
    return _MACHINE in _TABLES


_PID = 0xFFFF_FFFF  # where the isolate's pid goes in a cached program


@functools.cache
def _program(shared: bool) -> tuple[tuple[int, int, int, int], ...]:
    """The filter as (code, jt, jf, k) rows, jumps resolved from labels, ``_PID`` for the
    isolate's pid; ``shared``: the filter under which only ``io_uring_setup`` fails
    (ENOSYS: no ring, so libuv polls with epoll), before the event loop is made. Cached,
    so a template that built it once forks isolates that only fill in their pid."""
    pid = None if shared else _PID
    arch, nr = _TABLES[_MACHINE]
    rows: list[tuple[int, str | int, str | int, int]] = []
    labels: dict[str, int] = {}

    def at(label: str) -> None:
        labels[label] = len(rows)

    def jump(op: int, k: int, yes: str | int, no: str | int = 0) -> None:
        rows.append((op, yes, no, k))

    rows.append((_LD_W_ABS, 0, 0, 4))  # arch
    jump(_JEQ, arch, 0, "kill")
    rows.append((_LD_W_ABS, 0, 0, 0))  # syscall number
    jump(_JEQ, nr["io_uring_setup"], "enosys")
    if pid is None:
        rows.append((_RET, 0, 0, _ALLOW))
    if _MACHINE == "x86_64" and pid is not None:
        jump(_JGE, _X32_BIT, "deny")  # the x32 ABI's numbers would pass the checks below
    if pid is not None:
        _isolate_rows(nr, jump)
        rows.append((_RET, 0, 0, _ALLOW))
    at("clone")
    rows.append((_LD_W_ABS, 0, 0, 16))  # flags, low word
    jump(_JSET, _CLONE_THREAD, "allow", "deny")
    at("signal")
    rows.append((_LD_W_ABS, 0, 0, 16))  # target pid, low word
    jump(_JEQ, _PID, 0, "deny")
    rows.append((_LD_W_ABS, 0, 0, 20))  # high word: 0 for a positive pid
    jump(_JEQ, 0, "allow", "deny")
    at("allow")
    rows.append((_RET, 0, 0, _ALLOW))
    at("deny")
    rows.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    at("enosys")
    rows.append((_RET, 0, 0, _ERRNO | errno.ENOSYS))
    at("kill")
    rows.append((_RET, 0, 0, _KILL_PROCESS))

    out = []
    for i, (code, jt, jf, k) in enumerate(rows):
        t = labels[jt] - i - 1 if isinstance(jt, str) else jt
        f = labels[jf] - i - 1 if isinstance(jf, str) else jf
        out.append((code, t, f, k))
    return tuple(out)


def _isolate_rows(nr: dict[str, int], jump: Callable[..., None]) -> None:
    for name in _DENIED_NAMES:
        if name in nr:
            jump(_JEQ, nr[name], "deny")
    jump(_JEQ, nr["clone3"], "enosys")
    jump(_JEQ, nr["clone"], "clone")
    for name in _SIGNALS:
        jump(_JEQ, nr[name], "signal")


@functools.cache
def _packed(shared: bool) -> tuple[bytes, tuple[int, ...]]:
    """The program as the kernel reads it, and the byte offsets of its pid fields."""
    rows = _program(shared)
    spots = tuple(8 * i + 4 for i, row in enumerate(rows) if row[3] == _PID)
    return b"".join(struct.pack("=HBBI", *r) for r in rows), spots


def install(pid: int | None) -> None:
    """Load the filter into every thread of this process (needs ``no_new_privs``): the
    isolate's, for process ``pid``, or with None the shared one (``_program``)."""
    code, spots = _packed(pid is None)
    filt = ctypes.create_string_buffer(code, len(code))
    for at in spots:
        struct.pack_into("=I", filt, at, pid or 0)
    prog = ctypes.create_string_buffer(struct.pack("@HP", len(code) // 8, ctypes.addressof(filt)))
    syscall(_TABLES[_MACHINE][1]["seccomp"], _SET_MODE_FILTER, _FLAG_TSYNC, ctypes.addressof(prog))


def prepare() -> None:
    """Build both programs now (cached), so that each isolate only fills in its pid."""
    if supported():
        _packed(True)
        _packed(False)
