"""Engine side of the fork server: start the template process, ask it for isolates.

An interpreter start with dynwf's imports takes about 90 ms and a core; a fork of a
process that has them done already takes about a millisecond. The template
(``_template_main``) is started once per isolate pool, when the first isolate is
needed, and forks every isolate after that. Linux only: ``available()`` says where.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import sys
from tempfile import gettempdir
from typing import Any

from dynwf import sandbox
from dynwf.errors import DynwfError

log = logging.getLogger("dynwf.dispatch")
# How long the template may take to import and say it is ready (a busy 2-core machine
# can take seconds for an interpreter start), and to answer one fork request.
READY_TIMEOUT_S = 60.0
FORK_TIMEOUT_S = 30.0


class TemplateError(DynwfError):
    """The isolates' template process failed or went away."""


def available() -> bool:
    """Whether isolates can be forked from a template here (Linux: fork and fd passing)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


class ForkedProcess:
    """An isolate forked by the template: the part of ``asyncio.subprocess.Process`` the
    pool uses. Its parent is the template, which reports its exit."""

    def __init__(self, pid: int, root: str, template: Template | None = None) -> None:
        self.pid, self.root = pid, root
        self._template = template
        self.returncode: int | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        if not self._exited.done():
            self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def kill(self) -> None:
        """SIGKILL it: by its template, so the process dying (its memory freed, ~1 ms
        when it is woken on this CPU) does not hold up the engine's loop."""
        if self.returncode is None:
            if self._template is not None and self._template.kill_child(self.pid):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


class Template:
    """The template process and its control socket."""

    def __init__(self, proc: asyncio.subprocess.Process, sock: socket.socket) -> None:
        self.proc, self._sock = proc, sock
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._forks: dict[int, asyncio.Future[ForkedProcess]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ready: asyncio.Future[int] = self._loop.create_future()
        self.closed = False
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def start(cls) -> Template:
        """Start the template process and wait until it has done its imports."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        # Under the sandbox the template starts without the engine's environment (secrets).
        on = sandbox.policy_from_env().on
        env = {
            **(sandbox.isolate_environ(os.environ) if on else os.environ),
            "DYNWF_ISOLATE_PARENT": str(os.getpid()),
            "DYNWF_TEMPLATE_FD": str(theirs.fileno()),
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dynwf.dispatch._template_main",
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=env,
                # Its own session: Ctrl-C in a terminal reaches the engine, which stops
                # the template and its isolates itself.
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        template = cls(proc, ours)
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await asyncio.shield(template._ready)
        except BaseException:
            await template.close()
            raise
        return template

    @property
    def alive(self) -> bool:
        return not self.closed and self.proc.returncode is None

    async def fork(
        self, env: dict[str, str], fds: list[int], root_prefix: str, root_dir: str | None = None
    ) -> ForkedProcess:
        """A new isolate process with ``env`` as its environment, ``fds`` (its protocol
        socket, then its doorbell) as its descriptors (the caller closes its copies) and a
        new module folder ``root_prefix...`` in ``root_dir`` (default: this process's temp
        dir) as ``.root``, removed when it exits."""
        if not self.alive:
            raise TemplateError("the isolates' template process is not running")
        n = next(self._ids)
        waiter: asyncio.Future[ForkedProcess] = self._loop.create_future()
        self._forks[n] = waiter
        where = root_dir or gettempdir()
        request = {"fork": n, "env": env, "root_prefix": root_prefix, "root_dir": where}
        data = json.dumps(request).encode()
        try:
            while True:
                try:
                    socket.send_fds(self._sock, [data], fds)
                    break
                except BlockingIOError:  # a full socket buffer: wait until it drains
                    await asyncio.sleep(0.001)
                except OSError as exc:
                    raise TemplateError(f"the isolates' template process went away: {exc}") from exc
            async with asyncio.timeout(FORK_TIMEOUT_S):
                child = await asyncio.shield(waiter)
        finally:
            self._forks.pop(n, None)
        return child

    def kill_child(self, pid: int) -> bool:
        """Ask the template to SIGKILL its isolate ``pid``; False if it cannot be asked."""
        if not self.alive:
            return False
        try:
            self._sock.send(json.dumps({"kill": pid}).encode())
        except OSError:  # a full buffer, or the template is gone
            return False
        return True

    def _readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            self._message(json.loads(data))

    def _message(self, msg: dict[str, Any]) -> None:
        if "exited" in msg:
            child = self._children.pop(msg["exited"], None)
            if child is not None:
                child.exited(msg["code"])
        elif "forked" in msg:
            waiter = self._forks.get(msg["forked"])
            if waiter is not None and not waiter.done():
                if "pid" in msg:
                    # Known from here on: its "exited" may come in this very read, before
                    # the fork() waiting for it runs again.
                    child = ForkedProcess(msg["pid"], msg["root"], self)
                    self._children[msg["pid"]] = child
                    waiter.set_result(child)
                else:
                    waiter.set_exception(TemplateError(f"forking an isolate: {msg.get('error')}"))
        elif "ready" in msg and not self._ready.done():
            self._ready.set_result(msg["ready"])

    def _lost(self) -> None:
        """The template exited: its isolates die with it (``PR_SET_PDEATHSIG``)."""
        if not self.closed:
            log.warning("the isolates' template process exited; the next isolate starts another")
        self.closed = True
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        error = TemplateError("the isolates' template process exited")
        if not self._ready.done():
            self._ready.set_exception(error)
        for waiter in self._forks.values():
            if not waiter.done():
                waiter.set_exception(error)
        for child in self._children.values():
            child.kill()  # killed already by the kernel, or in a moment: not left running
            child.exited(-signal.SIGKILL)
        self._children.clear()
        self._sock.close()

    async def close(self) -> None:
        """Stop the template (its isolates die with it)."""
        if not self.closed:
            self.closed = True
            self._lost()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.proc.wait()
