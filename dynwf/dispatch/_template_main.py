"""The template process (the fork server): imports what an isolate needs once, then forks
isolates on the engine's request, so an isolate starts in about a millisecond.

Started by the engine (``_template.Template``) as ``python -m dynwf.dispatch._template_main``
with one end of a ``SOCK_SEQPACKET`` socket pair (``DYNWF_TEMPLATE_FD``). It forks from
here, never from the engine: the engine has an event loop, threads and DuckDB open,
none of which survive a fork, while this process stays single-threaded with no loop.

Messages are JSON, one per packet. The engine sends ``{"fork": n, "env": {...},
"root_prefix": ...}`` with the isolate's file descriptors attached (its protocol socket,
then its doorbell if any); the template makes the isolate's module folder, forks, and
answers ``{"forked": n, "pid": p, "root": folder}`` (or ``{"forked": n, "error": why}``),
and ``{"exited": p, "code": c}`` once it has reaped an isolate (its parent is this
process, not the engine) and removed its folder. ``{"kill": p}`` from the engine SIGKILLs
its isolate ``p`` (an eviction). ``{"ready": pid}`` is sent once, when the template is
prepared.

Lifetimes: the template dies with the engine and each isolate with the template
(``PR_SET_PDEATHSIG``), so killing the engine outright takes everything down.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

from dynwf import sandbox
from dynwf._lifetime import die_with_parent
from dynwf.dispatch import _isolate_main

# A fork request carries at most the socket and the doorbell; the env is a few KB.
MAX_PACKET = 1 << 20
MAX_FDS = 2
_TEMPLATE_FDS: list[int] = []  # the template's descriptors besides the control socket
_ROOTS: dict[int, str] = {}  # isolate pid -> its module folder


def _isolate(control: socket.socket, env: dict[str, str], fds: list[int]) -> None:
    """In the forked child: become an isolate with these descriptors, and never return."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        for fd in _TEMPLATE_FDS:  # the template's own: not the isolate's business
            os.close(fd)
        os.setsid()  # its own session, as a spawned isolate has
        os.environ.clear()
        os.environ.update(env)
        os.environ["DYNWF_ISOLATE_PARENT"] = str(os.getppid())  # dies with the template
        os.environ["DYNWF_ISOLATE_FD"] = str(fds[0])
        if len(fds) > 1:
            os.environ["DYNWF_ISOLATE_DOORBELL"] = str(fds[1])
        else:
            os.environ.pop("DYNWF_ISOLATE_DOORBELL", None)
        gc.enable()
        _isolate_main.serve(forked=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _send(control: socket.socket, msg: dict[str, Any]) -> None:
    control.send(json.dumps(msg).encode())


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        root = _ROOTS.pop(pid, None)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        _send(control, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _fork(control: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    env, prefix, where = request.get("env"), request.get("root_prefix"), request.get("root_dir")
    if (
        not isinstance(env, dict)
        or not isinstance(prefix, str)
        or not isinstance(where, str)
        or not 1 <= len(fds) <= MAX_FDS
    ):
        _send(control, {"forked": request.get("fork"), "error": "malformed fork request"})
        return
    ruleset: int | None = None
    try:
        # The isolate's module folder, made and removed here, off the engine's loop; the
        # engine removes it too if this process dies first.
        root = tempfile.mkdtemp(prefix=prefix, dir=where)
        # Its Landlock ruleset too: here the work is warm, in the child it is not.
        ruleset = _ruleset(env, root)
        pid = os.fork()
    except OSError as exc:
        if ruleset is not None:
            os.close(ruleset)
        _send(control, {"forked": request["fork"], "error": f"fork failed: {exc}"})
        return
    if pid == 0:
        child_env = {**env, "DYNWF_ISOLATE_ROOT": root}
        if ruleset is not None:
            child_env["DYNWF_ISOLATE_LANDLOCK_FD"] = str(ruleset)
        _isolate(control, child_env, fds)  # never returns
    if ruleset is not None:
        os.close(ruleset)  # the child has its copy
    _ROOTS[pid] = root
    _send(control, {"forked": request["fork"], "pid": pid, "root": root})


def _ruleset(env: dict[str, Any], root: str) -> int | None:
    """The isolate's Landlock ruleset (``sandbox.isolate_ruleset``) for the policy its
    environment names; None if it cannot be built here (the isolate then builds it)."""
    try:
        policy = sandbox.policy_from_env({k: v for k, v in env.items() if isinstance(v, str)})
    except Exception:  # a malformed policy: the isolate reports it as it reads its env
        return None
    return sandbox.isolate_ruleset(policy, root)


def _kill(pid: object) -> None:
    """SIGKILL one of this template's isolates (the engine evicts it); nothing else."""
    if isinstance(pid, int) and pid in _ROOTS:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def serve(control: socket.socket) -> None:
    """Answer fork requests until the engine closes its end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)  # a SIGCHLD wakes the select below
    with selectors.DefaultSelector() as sel:
        _TEMPLATE_FDS[:] = [wake_r, wake_w, sel.fileno()]
        sel.register(control, selectors.EVENT_READ, "control")
        sel.register(wake_r, selectors.EVENT_READ, "child")
        _send(control, {"ready": os.getpid()})
        while True:
            for key, _ in sel.select():
                if key.data == "child":
                    while True:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            break
                    _reap(control)
                    continue
                data, fds, _flags, _addr = socket.recv_fds(control, MAX_PACKET, MAX_FDS)
                if not data:
                    return  # the engine closed its end (it stops, or it died)
                try:
                    request = json.loads(data)
                    if "kill" in request:
                        _kill(request["kill"])
                    else:
                        _fork(control, request, fds)
                finally:
                    for fd in fds:
                        os.close(fd)  # the child has its copies


def main() -> None:
    parent = int(os.environ["DYNWF_ISOLATE_PARENT"])
    die_with_parent(parent)
    control = socket.socket(fileno=int(os.environ.pop("DYNWF_TEMPLATE_FD")))
    # What every isolate shares of the sandbox (namespaces, no_new_privs, an emptied
    # environment), once, before the imports and before any event loop: each fork
    # inherits it and adds its own part (``_isolate_main.enter_sandbox``).
    sandbox.confine_shared(sandbox.policy_from_env())
    _isolate_main.prepare_template()  # the template is prepared: every fork starts here
    # What the template holds is shared, copy-on-write, by every isolate: keep the
    # collector off those objects, so a child's collections do not copy their pages.
    gc.collect()
    gc.freeze()
    gc.disable()
    serve(control)


if __name__ == "__main__":
    main()
