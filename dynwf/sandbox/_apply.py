"""Putting an isolate process in the sandbox: the part isolates share, and each one's own.

Each function returns the protections it could not apply (``Missing`` rows); under
``require`` a missing protection raises ``SandboxUnavailableError`` instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import signal
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dynwf.errors import DynwfError
from dynwf.sandbox import _hook, _landlock, _seccomp
from dynwf.sandbox._policy import Policy
from dynwf.sandbox._sys import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWUSER,
    PR_SET_NO_NEW_PRIVS,
    prctl,
    unshare,
)

# A Worker's modules are at most 64 MB together (Cloudflare's MAX_DYNAMIC_WORKER_CODE_SIZE);
# no file an isolate writes may grow past this (the 200 MB file of issue 12 fails).
MAX_FILE_BYTES = 100 * 1024 * 1024
# What an isolate's environment keeps from the engine's: how Python starts and decodes
# text. Nothing else of the engine's environment (secrets) reaches tenant code.
_KEPT_ENV = (
    "PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONSAFEPATH", "PYTHONHASHSEED",
    "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8", "PYTHONIOENCODING", "LANG", "LC_ALL",
    "LC_CTYPE", "TZ", "DYNWF_SANDBOX", "DYNWF_SANDBOX_ALLOW",
)  # fmt: skip
_LOCALE_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")
# Beyond the Python installation: shared libraries (ctypes, extension modules), time zones.
_SYSTEM_READ = (
    "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache",
    "/usr/share/zoneinfo", "/etc/localtime", "/dev/urandom",
)  # fmt: skip


class SandboxUnavailableError(DynwfError):
    """``--sandbox=require`` and the kernel lacks a protection the sandbox needs."""


@dataclass(frozen=True, slots=True)
class Missing:
    """A protection that is off, and why."""

    protection: str
    reason: str

    def __str__(self) -> str:
        return f"{self.protection} ({self.reason})"


@dataclass(slots=True)
class _State:
    hook: _hook.Hook | None = None
    landlock: int = 0


_state = _State()


def isolate_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the engine's environment an isolate process starts with under the
    sandbox: Python's own settings, locale and the sandbox policy; no secrets."""
    env = {k: environ[k] for k in _KEPT_ENV if k in environ}
    # libuv (uvloop) would set up an io_uring, whose calls seccomp refuses (io_uring
    # operations pass by a seccomp filter): it polls with epoll instead.
    env["UV_USE_IO_URING"] = "0"
    return env


def _scrub_environ() -> None:
    import posix

    keep = {k: os.environ[k] for k in _LOCALE_ENV if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    posix.environ.clear()  # the startup copy `os.environ` was made from
    posix.environ.update({k.encode(): v.encode() for k, v in keep.items()})


def _refuse(policy: Policy, missing: list[Missing]) -> list[Missing]:
    if missing and policy.mode == "require":
        raise SandboxUnavailableError(
            "--sandbox=require: these protections are not available here: "
            + "; ".join(map(str, missing))
            + ". Run on a Linux kernel with user namespaces, Landlock (5.13+) and seccomp, "
            "or use --sandbox=auto to run without them"
        )
    return missing


def _map_ids(uid: int, gid: int) -> None:
    """Map this user to itself in the new user namespace (files keep their owners)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):  # fmt: skip
        # os.open, not open(..., "w"): its O_CREAT|O_TRUNC are refused on these files.
        fd = os.open(f"/proc/self/{name}", os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


def confine_shared(policy: Policy) -> list[Missing]:
    """The part of the sandbox every isolate shares; returns the protections left off.

    Sets ``no_new_privs``; moves the process into new user, network and IPC namespaces
    (no network device but a loopback that is down: nothing to connect to, not even the
    engine's ports; System V IPC of no other process); and empties the environment down
    to the locale (``os.environ`` and its startup copy).

    Also loads a first seccomp filter under which ``io_uring_setup`` fails, so an event
    loop made afterwards polls with epoll (uvloop's libuv would set up an io_uring, whose
    calls the isolate's filter refuses): make the loop after this call.

    Assumes: Linux (elsewhere it returns every protection as missing), a process with a
    single thread (the kernel refuses a new user namespace to a threaded process), and
    that the caller has already read from the environment what it needs. Must run before
    ``confine_isolate`` (whose Landlock and seccomp need ``no_new_privs``) and before
    anything tenant-controlled runs. Safe to run once in a template process whose forked
    children then call ``confine_isolate``: everything here is inherited across fork.
    Nothing under ``policy.mode == "off"``.
    """
    if not policy.on:
        return []
    if not sys.platform.startswith("linux"):
        return _refuse(policy, [Missing("all protections", f"{sys.platform} is not Linux")])
    _scrub_environ()
    missing: list[Missing] = []
    try:
        prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        missing.append(Missing("no_new_privs", str(exc)))
    try:
        uid, gid = os.geteuid(), os.getegid()  # before: unmapped ids read as 65534 after
        unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC)
        _map_ids(uid, gid)
    except OSError as exc:
        missing.append(Missing("network namespace", f"no user namespaces: {exc.strerror}"))
    if _seccomp.supported():
        with contextlib.suppress(OSError):  # the isolate's own filter reports seccomp
            _seccomp.install(None)
    _warm(policy)
    return _refuse(policy, missing)


def _warm(policy: Policy) -> None:
    """Work every isolate would repeat, done once here (a template's children inherit it)."""
    _hook.resolve_all(runtime_paths())
    if _landlock.abi():
        _landlock.prepare([*runtime_paths(), *policy.allow, "/dev/null"])
    _seccomp.prepare()


@functools.cache
def runtime_paths() -> tuple[str, ...]:
    """What a tenant may read besides its modules: the Python installation dynwf runs on,
    dynwf itself, shared libraries. Never the working directory (the project)."""
    # (site and os are loaded at every start; sysconfig.get_paths() costs ~7 ms the
    # first time, in every spawned isolate)
    paths = {os.path.dirname(os.__file__), *site.getsitepackages()}
    paths.add(str(Path(__file__).resolve().parent.parent))  # dynwf (a namespace package)
    paths.add(os.path.join(sys.base_prefix, "lib"))
    paths.add(os.path.join(sys.base_exec_prefix, "lib"))
    paths.update(_SYSTEM_READ)
    if site.ENABLE_USER_SITE:
        paths.add(site.getusersitepackages())
    # One Landlock rule per folder that is not inside another (each rule is a system call
    # in every isolate's start): /lib is /usr/lib on a merged-/usr system, stdlib lies in
    # <prefix>/lib, site-packages in the venv's lib folder.
    real = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    return tuple(p for p in real if not any(p.startswith(q + "/") for q in real if q != p))


def _grants(policy: Policy, root: str) -> tuple[list[str], list[str]]:
    """What an isolate whose modules are in ``root`` may read, and read and write."""
    return [*runtime_paths(), root], [*policy.allow, "/dev/null"]


def isolate_ruleset(policy: Policy, modules: str | Path) -> int | None:
    """The Landlock ruleset ``confine_isolate(policy, modules)`` applies, built now: a
    descriptor to pass it as ``ruleset``. A template builds it before it forks the
    isolate, where the work is warm (in the child it was the largest part of entering
    the sandbox: ~1 ms of copy-on-write faults and cold calls). None where the sandbox
    is off or the kernel has no Landlock or refuses: the isolate then builds its own and
    reports what is off, as before."""
    if not policy.on or not sys.platform.startswith("linux"):
        return None
    version = _landlock.abi()
    if not version:
        return None
    read, write = _grants(policy, os.path.abspath(modules))
    try:
        return _landlock.ruleset(version, read=read, write=write)
    except OSError:
        return None


def confine_isolate(
    policy: Policy, modules: str | Path, ruleset: int | None = None
) -> list[Missing]:
    """The per-isolate part of the sandbox; returns the protections left off.

    After it, this process can read the Python runtime (``runtime_paths``) and
    ``modules`` (the folder the engine writes its tenant's code to; the isolate never
    writes there), read and write the ``policy.allow`` folders, and nothing else of the
    filesystem (Landlock); it cannot connect or bind TCP, nor signal any
    process but itself; it cannot start processes, open sockets, trace or read other
    processes, or make namespaces, mounts or io_uring (seccomp); no file it writes grows
    past ``MAX_FILE_BYTES``; no core dumps. An audit hook turns the refused calls that
    Python makes into ``PermissionError``s that say why. The working directory leaves
    ``sys.path``. The environment is emptied down to the locale, as ``confine_shared``
    leaves it.

    Assumes: ``confine_shared`` already ran in this process or the template it was forked
    from (for ``no_new_privs``, and it prepares what this call reuses), and every file
    descriptor the isolate needs (its protocol socket, its doorbell) is already open:
    nothing can be opened outside the view afterwards, and whatever the isolate reads
    from its environment is read. Runs in the isolate's own process (the seccomp filter
    allows signals to this pid only), before any tenant code is imported. Cheap: a few
    dozen system calls. Nothing under ``policy.mode == "off"``. ``ruleset``: the Landlock part,
    built ahead by ``isolate_ruleset`` for the same policy and folder (closed here).
    """
    if not policy.on or not sys.platform.startswith("linux"):
        if ruleset is not None:
            os.close(ruleset)
        if not policy.on:
            return []
        return _refuse(policy, [Missing("all protections", f"{sys.platform} is not Linux")])
    missing: list[Missing] = []
    # A forked isolate's settings came in its environment after the template's was
    # emptied: read by now (see Assumes), and none of the tenant's business.
    _scrub_environ()
    pid = os.getpid()
    root = os.path.abspath(modules)
    read, write = _grants(policy, root)
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p and os.path.abspath(p) != cwd]
    os.chdir(root)  # as on Cloudflare, where a Worker's modules are its working directory
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the cap fails, not kills
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)  # a lower cap given to us stays
    cap = MAX_FILE_BYTES if hard == resource.RLIM_INFINITY else min(hard, MAX_FILE_BYTES)
    resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    version = _landlock.abi()
    if version:
        try:
            if ruleset is not None:
                built, ruleset = ruleset, None
                try:
                    _landlock.enforce(built)  # closes it
                finally:
                    _landlock.forget()
            else:
                _landlock.restrict(version, read=read, write=write)
            _state.landlock = version
        except OSError as exc:
            missing.append(Missing("filesystem view", f"Landlock refused: {exc.strerror}"))
    else:
        if ruleset is not None:
            os.close(ruleset)
        missing.append(Missing("filesystem view", "no Landlock in this kernel (Linux 5.13+)"))
    if not _seccomp.supported():
        missing.append(Missing("process, socket and signal limits", "no seccomp table here"))
    else:
        try:
            _seccomp.install(pid)
        except OSError as exc:
            missing.append(Missing("process, socket and signal limits", f"seccomp: {exc.strerror}"))
    _state.hook = _hook.Hook(pid, read, write)
    _hook.install(_state.hook)
    return _refuse(policy, missing)
