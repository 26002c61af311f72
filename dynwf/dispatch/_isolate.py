"""Engine side of isolates: one OS process per loaded worker, a warm spare, limits, eviction.

An isolate that dies (a crash, ``os._exit``, an out-of-memory kill) or is killed for
spinning past its CPU budget costs only the work it was doing: every pass running in
it ends with ``PassInterrupted`` and the engine replays those instances in a fresh
isolate, where the cut attempts count as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from dynwf import sandbox
from dynwf.dispatch import _protocol, _template
from dynwf.dispatch._doorbell import Doorbell
from dynwf.dispatch._template import ForkedProcess, Template
from dynwf.dispatch._wire import Connection, ConnectionLost, FastHandler, Handler

log = logging.getLogger("dynwf.dispatch")
_TICKS = os.sysconf("SC_CLK_TCK")
# Each isolate writes its tenant's modules to a folder named for the engine's PID, which
# the engine removes when the isolate exits; ``sweep_stale`` removes those of dead engines.
ROOT_PREFIX = "dynwf-isolate-"
# Memory-backed, on Linux: where isolate folders go unless TMPDIR says otherwise.
SHM = "/dev/shm"
_reapers: dict[int, asyncio.Task[None]] = {}  # pid -> removes its folder when it exits
# An isolate's process: forked from the template (Linux), or a fresh interpreter.
Process = ForkedProcess | asyncio.subprocess.Process
_spawn_said = False  # the fallback to fresh interpreters is logged once per process
# Spare isolates kept forked ahead (``IsolatePool.warm``): each is a few MB of pages
# not shared with the template. One fresh interpreter is kept when not forking.
FORKED_SPARES = 4


@dataclass(frozen=True, slots=True)
class IsolateLimits:
    """Per-isolate caps: address space in MB, CPU ms per attempt (wrangler's limits.cpu_ms)."""

    memory_mb: int = 1024
    cpu_ms: int = 30_000


def _runnable() -> int:
    """How many threads on this machine are running or ready to run now (0 if unknown)."""
    try:
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return 0


def _cpu_ms(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 // _TICKS
    except (OSError, IndexError, ValueError):
        return 0


class Isolate:
    """One child process and the connection to it."""

    def __init__(
        self,
        proc: Process,
        conn: Connection,
        handler: Handler,
        fast: FastHandler | None = None,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.root = ""  # its module folder (the engine writes the tenant's files there)
        self.handler = handler  # set per load: answers host/binding calls
        self.conn = conn
        self._fast = fast
        conn.handler, conn.fast = self._dispatch, self._checked
        # Set by the loader at load: whose code runs here, and its binding names.
        self.worker: str | None = None
        self.bindings: Collection[str] = ()
        # In-flight attempt -> the process's CPU ms when it started, read by the watchdog
        # at its next tick (None until then), never on the step's own path.
        self.attempts: dict[str, int | None] = {}
        self.last_used = time.monotonic()
        self.killed_for: str | None = None
        self.over_cpu_limit = False  # killed by the watchdog for CPU (limits.cpu_ms)
        self.closing = False  # stopped by the engine (evicted, replaced), not for its code
        self.busy = 0  # runs and fetches in flight

    @classmethod
    async def connect(
        cls, booted: Booted, handler: Handler, fast: FastHandler | None = None
    ) -> Isolate:
        """Talk to a process started by ``spawn``."""
        proc, sock, bell, root = booted
        try:
            conn = await Connection.open(sock)
        except BaseException:
            await discard(booted)
            raise
        conn.doorbell = bell
        iso = cls(proc, conn, handler, fast)
        iso.root = root
        return iso

    def serve(self, handler: Handler, fast: FastHandler | None = None) -> None:
        """Answer the process's requests with these (a spare given to a worker)."""
        self.handler, self._fast = handler, fast

    def _checked(self, msg: dict[str, Any]) -> bool:
        """Every request from the process passes here first: a message outside the
        protocol (``_protocol.check``) ends the isolate, unread by the engine."""
        if self.killed_for is not None:
            return True  # what a killed process sent after its fatal message is dropped
        why = _protocol.check(msg, self.bindings)
        if why is not None:
            self.kill(f"worker {self.worker!r} sent a message outside the protocol: {why}")
            return True
        return self._fast is not None and self._fast(msg)

    async def _dispatch(self, msg: dict[str, Any]) -> Any:
        return await self.handler(msg)

    @property
    def alive(self) -> bool:
        """Not seen to end (cheap: what the event loop has read so far)."""
        return not self.conn.closed.done() and self.proc.returncode is None

    def usable(self) -> bool:
        """Alive, asking the socket now: a process that died since the loop last looked
        is not sent a request as if it were alive (one system call; for the moment of
        use, not for scans)."""
        return self.proc.returncode is None and not self.conn.peer_closed()

    def attempt_started(self, token: str) -> None:
        self.attempts[token] = None

    def attempt_ended(self, token: str) -> None:
        self.attempts.pop(token, None)

    def run_ended(self, run: str) -> None:
        """A pass ended: forget its attempts still in flight (cancelled, timed out)."""
        for token in [t for t in self.attempts if t.startswith(f"{run}:")]:
            del self.attempts[token]

    async def responsive(self, grace: float) -> bool:
        """Whether the process answers a ping within ``grace`` s (its event loop is free).
        A process that is gone counts as responsive: there is nothing left to replace."""
        if not self.alive:
            return True
        try:
            async with asyncio.timeout(grace):
                await self.conn.request({"op": "ping"})
        except TimeoutError:
            return not self.alive
        except Exception:  # gone meanwhile, or answered with an error: it is not blocked
            return True
        return True

    def over_cpu(self, cpu_ms: int) -> bool:
        """Whether an in-flight attempt has used more than ``cpu_ms`` of CPU (a watchdog tick)."""
        cpu = _cpu_ms(self.pid)
        over = False
        for token, start in self.attempts.items():
            if start is None:
                self.attempts[token] = cpu  # started since the last tick
            elif cpu - start > cpu_ms:
                over = True
        return over

    def kill(self, reason: str, *, quiet: bool = False) -> None:
        if self.proc.returncode is None:
            self.killed_for = reason
            (log.debug if quiet else log.warning)("isolate pid %s killed: %s", self.pid, reason)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    async def close(self, *, wait: bool = True) -> None:
        """Stop the process; ``wait=False`` does not wait for it to exit (an eviction:
        a SIGKILLed process frees its memory without the engine watching).

        The engine's end of the socket is closed once the process has died: closed at
        once, it woke the process to the end of its input, and most evicted isolates of a
        burst spent ~2 ms of CPU shutting themselves down before the SIGKILL landed."""
        self.closing = True
        if not self.alive:
            await self._release()
            return
        self.kill("evicted", quiet=True)
        if wait:
            await self._release_when_dead()
            return
        task = asyncio.ensure_future(self._release_when_dead())
        _RELEASING.add(task)
        task.add_done_callback(_RELEASING.discard)

    async def _release_when_dead(self) -> None:
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.proc.wait()
        finally:
            await self._release()

    async def _release(self) -> None:
        """Close the engine's end of the socket and the doorbell."""
        await self.conn.close()
        bell, self.conn.doorbell = self.conn.doorbell, None
        if bell is not None:
            bell.close()


# Evicted isolates whose socket is closed once their process has died (``Isolate.close``).
_RELEASING: set[asyncio.Task[None]] = set()


async def released() -> None:
    """Wait until every evicted isolate's socket is closed (their processes have died)."""
    loop = asyncio.get_running_loop()
    while mine := [t for t in _RELEASING if t.get_loop() is loop]:
        await asyncio.gather(*mine, return_exceptions=True)


# A started isolate process, the engine's end of its message socket, its doorbell, and
# its module folder.
Booted = tuple[Process, socket.socket, Doorbell | None, str]


class Spare(NamedTuple):
    """A spare isolate kept by the pool: its process, and it connected (no tenant yet)."""

    proc: Process
    isolate: Isolate


async def _not_yet(msg: dict[str, Any]) -> Any:
    raise RuntimeError("this isolate serves no worker yet")


async def spawn(limits: IsolateLimits, template: Template | None = None) -> Booted:
    """Start an isolate process, forked from ``template`` if given, else a fresh
    interpreter; it boots and waits for a ``load`` message."""
    ours, theirs = socket.socketpair()
    made = Doorbell.create()
    bell, bell_fd = made if made is not None else (None, None)
    prefix = f"{ROOT_PREFIX}{os.getpid()}-"
    # A forked isolate's folder is made by the template (``fork``), off this loop.
    root = tempfile.mkdtemp(prefix=prefix, dir=isolates_dir()) if template is None else ""
    # Under the sandbox the isolate starts without the engine's environment (secrets).
    base = sandbox.isolate_environ(os.environ) if sandbox.policy_from_env().on else os.environ
    env = {
        **base,
        "DYNWF_ISOLATE_MEMORY_MB": str(limits.memory_mb),
        "DYNWF_ISOLATE_PARENT": str(os.getpid()),
        "DYNWF_ISOLATE_FD": str(theirs.fileno()),
        "DYNWF_ISOLATE_ROOT": root,
    }
    if bell_fd is not None:
        env["DYNWF_ISOLATE_DOORBELL"] = str(bell_fd)
    fds = [theirs.fileno()] if bell_fd is None else [theirs.fileno(), bell_fd]
    proc: Process
    try:
        if template is not None:
            proc = await template.fork(env, fds, prefix, isolates_dir())
            root = proc.root
        else:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dynwf.dispatch._isolate_main",
                stdin=asyncio.subprocess.DEVNULL,
                pass_fds=fds,
                env=env,
                # Its own session: Ctrl-C in a terminal reaches the engine, which stops its
                # isolates itself, not every isolate at once with a traceback each.
                start_new_session=True,
            )
    except BaseException:
        ours.close()
        if bell is not None:
            bell.close()
        if root:
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        theirs.close()
        if bell_fd is not None:
            os.close(bell_fd)
    reaper = asyncio.get_running_loop().create_task(_remove_on_exit(proc, root))
    _reapers[proc.pid] = reaper
    reaper.add_done_callback(lambda task: _forget_reaper(proc.pid, task))
    return proc, ours, bell, root


def _forget_reaper(pid: int, task: asyncio.Task[None]) -> None:
    if _reapers.get(pid) is task:  # not a later process's that was given the same PID
        del _reapers[pid]


async def _remove_on_exit(proc: Process, root: str) -> None:
    """Remove an isolate's module folder once its process has exited, however it exits
    (a forked isolate's is gone already unless its template died first)."""
    try:
        await proc.wait()
    finally:  # also when the engine's loop shuts down without waiting for it
        if os.path.lexists(root):
            shutil.rmtree(root, ignore_errors=True)


async def reap(pids: Collection[int]) -> None:
    """Wait until the folders of these stopped isolates are removed (at shutdown)."""
    pending = [t for pid, t in list(_reapers.items()) if pid in pids and not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=5)


@functools.cache
def _shm_usable() -> bool:
    return os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK)


def isolates_dir() -> str:
    """The folder isolate module folders are made in: ``$TMPDIR`` when it is set, else
    ``/dev/shm`` where it is writable (a memory file system: a folder and a file or two
    per isolate, made and removed on every cold load, cost a fraction there of what they
    cost on a disk's journaled one), else the system's temp dir."""
    if not os.environ.get("TMPDIR") and _shm_usable():
        return SHM
    return tempfile.gettempdir()


def sweep_stale(tmp: str | None = None) -> int:
    """Remove the module folders of isolates whose engine died (SIGKILL); returns how many.

    Only folders named for a PID that no longer runs: a live engine's isolates keep theirs.
    Without ``tmp``, both the isolates' folder and the temp dir are swept.
    """
    removed = 0
    places = [tmp] if tmp else sorted({isolates_dir(), tempfile.gettempdir()})
    for path in (p for place in places for p in Path(place).glob(f"{ROOT_PREFIX}*-*")):
        pid = path.name[len(ROOT_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += not path.exists()
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


async def discard(booted: Booted) -> None:
    """Stop a process from ``spawn`` that never served (a spare at shutdown, a failed connect)."""
    proc, sock, bell, _root = booted
    sock.close()
    if bell is not None:
        bell.close()
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


class IsolatePool:
    """Starts isolates (keeping warm spares), watches their CPU, evicts idle ones.

    On Linux every isolate is forked from one template process (``_template``),
    started with the pool's first isolate; elsewhere each is a fresh interpreter.
    """

    def __init__(
        self,
        limits: IsolateLimits,
        *,
        idle_seconds: float,
        on_evict: Callable[[Isolate], Awaitable[None]],
    ) -> None:
        self.limits = limits
        self.idle_seconds = idle_seconds
        self._spares: deque[asyncio.Task[Spare]] = deque()
        self._live: set[Isolate] = set()
        self._started: set[int] = set()  # pids of the processes booted, for close() to reap
        self._watch: asyncio.Task[None] | None = None
        self._on_evict = on_evict
        self._closed = False
        self._booting = 0  # isolate processes starting now
        self._cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self._crowded = False  # at the last watchdog tick, more runnable threads than cores
        self._template: Template | None = None
        self._template_lock = asyncio.Lock()
        self.fork = _template.available()
        if (swept := sweep_stale()) > 0:
            log.info("removed %d isolate folder(s) left by an engine that was killed", swept)

    def warm(self, delay: float = 0.0) -> None:
        """Boot spare isolates (after ``delay`` s), so the next cold loads do not pay for it.

        Forked, ``FORKED_SPARES`` of them (a fresh interpreter takes a core for ~0.1 s:
        then one). The loader asks after a cold load with a delay, so that neither a
        boot nor a forked spare's ``warm_up`` competes with the tenant's import and
        first step for the CPU.
        """
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.warm)
            return
        while len(self._spares) < (FORKED_SPARES if self.fork else 1) and not self._closed:
            self._spares.append(asyncio.create_task(self._spare()))

    async def _spare(self) -> Spare:
        """A booted isolate process, its connection already open (no loop turns on the
        cold load that takes it)."""
        booted = await self._boot()
        return Spare(booted[0], await Isolate.connect(booted, _not_yet))

    async def start(self, handler: Handler, fast: FastHandler | None = None) -> Isolate:
        # Claim a spare before awaiting it, so concurrent loads never share a process.
        # The next spares are started by ``warm()`` shortly after this load is done (the
        # loader calls it): starting one now would compete for the CPU with the
        # tenant's import and its first step.
        spare = self._spares.popleft() if self._spares else None
        got: Spare | None = None
        if spare is not None:
            try:
                got = await spare
            except (_template.TemplateError, ConnectionLost) as exc:
                # Its template died while forking it (and is replaced on the next fork):
                # a failed spare is not this load's failure.
                log.info("the spare isolate did not start (%s); starting another", exc)
        if got is not None and not got.isolate.usable():
            log.info("the spare isolate (pid %s) had exited; starting another", got.proc.pid)
            await got.isolate.close()
            got = None
        if got is None:
            iso = await Isolate.connect(await self._boot(), handler, fast)
        else:
            iso = got.isolate
            iso.serve(handler, fast)
        self._live.add(iso)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._watchdog())
        return iso

    async def _boot(self) -> Booted:
        self._booting += 1
        try:
            booted = await spawn(self.limits, await self._template_ready())
        finally:
            self._booting -= 1
        self._started.add(booted[0].pid)
        return booted

    async def _template_ready(self) -> Template | None:
        """The running template to fork from (started now if none runs); None off Linux."""
        if not self.fork:
            global _spawn_said
            if not _spawn_said:
                _spawn_said = True
                log.warning(
                    "isolates start as fresh interpreters (about 90 ms each, not a "
                    "millisecond): forking them from a template process needs Linux"
                )
            return None
        async with self._template_lock:
            if self._closed:
                raise _template.TemplateError("the isolate pool is closed")
            if self._template is None or not self._template.alive:
                if self._template is not None:
                    await self._template.close()
                self._template = await Template.start()
            return self._template

    @property
    def idle_core(self) -> bool:
        """Whether a core is free for a lone pass's isolate to spin on.

        Not while an isolate process boots (an interpreter start wants a core for
        tens of ms), nor when more threads were runnable than there are cores at the
        last watchdog tick (another program wants the CPU), nor on a single core.
        """
        return self._cores > 1 and not self._booting and not self._crowded

    async def _watchdog(self) -> None:
        while self._live:
            await asyncio.sleep(0.05)
            # The engine and a spinning isolate are two of the runnable threads.
            self._crowded = _runnable() > self._cores
            now = time.monotonic()
            for iso in list(self._live):
                if not iso.alive:
                    self._live.discard(iso)
                    continue
                if iso.busy:
                    iso.last_used = now
                if iso.attempts:
                    if iso.over_cpu(self.limits.cpu_ms):
                        iso.over_cpu_limit = True
                        iso.kill(
                            f"worker {iso.worker!r}: a step attempt or a request used more "
                            f"than {self.limits.cpu_ms} ms of CPU (limits.cpu_ms)"
                        )
                elif now - iso.last_used > self.idle_seconds:
                    self._live.discard(iso)
                    await self._on_evict(iso)

    async def close(self) -> None:
        self._closed = True
        stopped = {iso.pid for iso in self._live} | self._started
        for iso in list(self._live):
            await iso.close()
        self._live.clear()
        while self._spares:
            try:
                got: Spare | None = await self._spares.popleft()
            except Exception:  # it never booted (the template failed): nothing to stop
                got = None
            if got is not None:
                stopped.add(got.proc.pid)
                await got.isolate.close()
        if self._watch is not None:
            self._watch.cancel()
        async with self._template_lock:
            if self._template is not None:
                await self._template.close()
                self._template = None
        await released()
        await reap(stopped)
