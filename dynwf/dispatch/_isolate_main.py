"""The isolate process: one tenant's loaded worker, driven by the engine over stdin/stdout.

Forked from the template process (``_template_main``) on Linux, else started as
``python -m dynwf.dispatch._isolate_main``; it waits, already booted, for a ``load``
message (so a cold dispatch costs a module import, not an interpreter start), then
serves ``run`` (a workflow pass; step calls go back to the engine) and ``fetch``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import gc
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import marshal
import os
import resource
import select
import shutil
import socket
import sys
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dynwf import sandbox
from dynwf._lifetime import die_with_parent
from dynwf.dispatch._compiled import PLACEHOLDER, placed
from dynwf.dispatch._doorbell import Doorbell
from dynwf.dispatch._wire import Connection, ConnectionLost, RemoteError
from dynwf.engine import (
    DEFAULT_COMPATIBILITY_DATE,
    DoBegin,
    Outcome,
    error_from_dict,
    resolve_step_config,
)
from dynwf.workers import Request, install
from dynwf.workers._context import ExecutionContext
from dynwf.workers._event import TenantEvent
from dynwf.workers._fetch import set_channel
from dynwf.workers._rpc import TenantWorkflows
from dynwf.workers._step import TenantStep

# How long an isolate spins for the engine's answer to a do_begin (the commit of the
# attempt fact: about 0.5 ms here, 1 ms with fsync) while the engine says it may.
BEGIN_SPIN_S = 0.002


class RemoteHost:
    """The StepHost of a pass whose engine side lives in the engine process."""

    def __init__(
        self, conn: Connection, run: str, compatibility_date: str, *, grant: bool = False
    ) -> None:
        self._conn, self._run = conn, run
        self.compatibility_date = compatibility_date
        # The engine granted this pass's first step.do (a fresh pass: its answer is
        # known): it begins at once and the engine is told one way (``granted``).
        self._grant = grant

    async def _call(self, method: str, *args: Any, soon: float = 0.0) -> Any:
        self._grant = False  # the grant is for the pass's first host call only
        try:
            return await self._conn.request(
                {"op": "host", "run": self._run, "method": method, "args": list(args)},
                soon=soon,
            )
        except RemoteError as exc:
            raise error_from_dict(exc.error) from None

    async def do_begin(self, key: str, name: str, count: int, config: Any) -> DoBegin:
        if self._grant:
            self._grant = False
            try:
                cfg = resolve_step_config(config, step=name)
            except Exception:
                pass  # the engine says what is wrong with it, as without the grant
            else:
                self._conn.notify(
                    {
                        "op": "host",
                        "run": self._run,
                        "method": "granted",
                        "args": [key, name, count, config],
                    },
                    # Written now, before the callback runs: one that blocks this loop or
                    # ends the process must still count as an attempt that began.
                    now=True,
                )
                return ("run", 1, cfg.as_dict(), cfg.timeout_ms)
        bell = self._conn.doorbell
        soon = BEGIN_SPIN_S if bell is not None and bell.hint else 0.0
        return tuple(await self._call("do_begin", key, name, count, config, soon=soon))

    def began(self, key: str, attempt: int) -> None:
        # One way, in order before the attempt's do_end; sent by the end of this loop turn
        # (with the do_end, for a callback that does not suspend).
        with contextlib.suppress(ConnectionLost):  # the engine is gone: so is this process soon
            self._conn.notify(
                {"op": "host", "run": self._run, "method": "began", "args": [key, attempt]}
            )

    async def do_end(
        self,
        key: str,
        attempt: int,
        ok: bool,
        value: Any,
        error: Any,
        retryable: bool,
        delay_ms: int | None = None,
    ) -> Outcome:
        if ok:
            # A success's outcome is always ("done", value): send it one way and go on.
            # The pipe keeps order, so the engine records it before the next request,
            # and the next step's do_begin waits until it is durable.
            self._conn.notify(
                {
                    "op": "host",
                    "run": self._run,
                    "method": "do_end",
                    "args": [key, attempt, ok, value, error, retryable],
                }
            )
            return ("done", value)
        delay = [] if delay_ms is None else [delay_ms]  # a dynamic retry delay's answer
        return tuple(await self._call("do_end", key, attempt, ok, value, error, retryable, *delay))

    async def sleep(self, key: str, name: str, count: int, ms: int, until: int | None) -> None:
        await self._call("sleep", key, name, count, ms, until)

    async def wait_for_event(
        self, key: str, name: str, count: int, type_: str, timeout_ms: int
    ) -> Outcome:
        return tuple(await self._call("wait_for_event", key, name, count, type_, timeout_ms))


class RemoteInstance:
    def __init__(self, binding: RemoteBinding, id: str) -> None:
        self._binding, self.id = binding, id

    async def _call(self, method: str, *args: Any) -> Any:
        return await self._binding._call("instance", method, self.id, *args)

    async def status(self) -> Any:
        return await self._call("status")

    async def pause(self) -> None:
        await self._call("pause")

    async def resume(self) -> None:
        await self._call("resume")

    async def terminate(self) -> None:
        await self._call("terminate")

    async def restart(self, options: Any = None, **kwargs: Any) -> None:
        await self._call("restart", {**(options or {}), **kwargs} if options or kwargs else None)

    async def send_event(self, event: Any = None, **kwargs: Any) -> None:
        await self._call("send_event", {**(event or {}), **kwargs})

    async def delete(self) -> None:
        await self._call("delete")

    sendEvent = send_event


class RemoteBinding:
    """A Workflow binding from the tenant's env, served by the engine process."""

    def __init__(self, conn: Connection, name: str) -> None:
        self._conn, self._name = conn, name

    async def _call(self, kind: str, method: str, *args: Any) -> Any:
        try:
            return await self._conn.request(
                {
                    "op": "binding",
                    "binding": self._name,
                    "kind": kind,
                    "method": method,
                    "args": list(args),
                }
            )
        except RemoteError as exc:
            raise error_from_dict(exc.error) from None

    async def create(self, options: Any = None, **kwargs: Any) -> RemoteInstance:
        return RemoteInstance(
            self, await self._call("binding", "create", {**(options or {}), **kwargs})
        )

    async def create_batch(self, items: Any) -> Any:
        made = await self._call("binding", "create_batch", items)
        if isinstance(made, dict):  # the {"count"} / {"instances"} forms
            return {**made, "created": [RemoteInstance(self, i) for i in made["created"]]}
        return [RemoteInstance(self, i) for i in made]

    async def get(self, id: str) -> RemoteInstance:
        return RemoteInstance(self, await self._call("binding", "get", id))

    async def delete_batch(self, ids: list[Any]) -> Any:
        return await self._call("binding", "delete_batch", ids)

    createBatch = create_batch
    deleteBatch = delete_batch


class Env:
    """The tenant's ``self.env``: plain values and remote bindings as attributes."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _where(exc: BaseException, root: Path) -> str:
    """``module.py:line`` of the deepest frame inside the worker's own modules."""
    where = "?"
    tb = exc.__traceback__
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if root in path.parents:
            where = f"{path.relative_to(root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


class _SourceLoader(importlib.abc.InspectLoader):
    """Executes one of the tenant's modules from its source, as written to ``path``, or
    from the engine's compiled code of that source (``_compiled``) when it sent one."""

    def __init__(self, path: str, source: str, compiled: str | None) -> None:
        self.path, self.source, self.compiled = path, source, compiled

    def get_source(self, fullname: str) -> str:
        return self.source

    def get_code(self, fullname: str) -> types.CodeType:
        if self.compiled is not None:
            with contextlib.suppress(Exception):  # unusable: compile it here instead
                return placed(self.compiled, self.path)
        # Compiled under the file's name, so tracebacks and SyntaxErrors name it.
        return compile(self.source, self.path, "exec", dont_inherit=True)

    def is_package(self, fullname: str) -> bool:
        return os.path.basename(self.path) == "__init__.py"

    def exec_module(self, module: types.ModuleType) -> None:
        exec(self.get_code(module.__name__), module.__dict__)


class _SourceFinder(importlib.abc.MetaPathFinder):
    """Finds the tenant's Python modules among the sources its load sent."""

    def __init__(self, sources: dict[str, tuple[str, str, str | None]]) -> None:
        self.sources = {
            (n[: -len(".__init__")] if n.endswith(".__init__") else n): v
            for n, v in sources.items()
        }

    def find_spec(
        self, fullname: str, path: Any = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        found = self.sources.get(fullname)
        if found is None:
            return None
        loader = _SourceLoader(*found)
        file = loader.path
        package = loader.is_package(fullname)
        spec = _Spec(fullname, loader, origin=file, is_package=package)
        spec.has_location = True  # __file__ is the file the engine wrote
        if package:
            spec.submodule_search_locations = [os.path.dirname(file)]
        return spec


class _Spec(importlib.machinery.ModuleSpec):
    """A tenant module's spec, with no ``__cached__``: its bytecode is never written
    (``sys.dont_write_bytecode``), so the path of a cache file is not worked out."""

    @property
    def cached(self) -> str | None:
        return None

    @cached.setter
    def cached(self, value: str | None) -> None:
        pass


class Worker:
    def __init__(self, root: Path, policy: sandbox.Policy) -> None:
        self.root, self.policy = root, policy
        self.module: Any = None
        self.env: Env | None = None
        self.compatibility_date = DEFAULT_COMPATIBILITY_DATE
        self.conn: Connection | None = None

    async def handle(self, msg: dict[str, Any]) -> Any:
        op = msg["op"]
        if op == "load":
            return self.load(msg)
        if op == "run":
            return await self.run(msg)
        if op == "fetch":
            return await self.fetch(msg)
        if op == "ping":
            return "pong"
        raise ValueError(f"unknown op {op!r}")

    def load(self, msg: dict[str, Any]) -> dict[str, Any]:
        code = msg["code"]
        root = self.root
        # module name -> (file, source, the engine's compiled code of it or None)
        sources: dict[str, tuple[str, str, str | None]] = {}
        same_flags = msg.get("optimize") == sys.flags.optimize
        compiled: dict[str, str] = (msg.get("compiled") or {}) if same_flags else {}
        for name, module in code["modules"].items():
            if isinstance(module, str) and name.endswith(".py"):
                path = os.path.join(root, name)
                sources[name[:-3].replace("/", ".")] = (path, module, compiled.get(name))
        # The Python modules are imported from the source sent. The engine wrote every
        # module to ``root`` before sending it (``_loader._write_modules``), for the
        # tenant to read as on Cloudflare; this process may read that folder, never write
        # it. Anything not sent as Python source (a namespace package, a data file) is
        # found on the path as before.
        sys.meta_path.insert(0, _SourceFinder(sources))
        sys.path.insert(0, str(root))  # this process belongs to one tenant: no sharing
        main = code["mainModule"]
        self.compatibility_date = code.get("compatibilityDate") or self.compatibility_date
        assert self.conn is not None
        values = dict(code.get("env") or {})
        for name in msg.get("bindings", []):
            # As Cloudflare's tenant SDK wraps it: create/get give a dict handle.
            values[name] = TenantWorkflows(RemoteBinding(self.conn, name))
        self.env = Env(values)
        module_name = main[:-3] if main.endswith(".py") else main
        try:
            self.module = importlib.import_module(module_name.replace("/", "."))
        except SyntaxError as exc:
            where = f"{Path(exc.filename or main).name}:{exc.lineno}"
            raise SyntaxError(f"{where}: {exc.msg}") from None
        except Exception as exc:
            raise type(exc)(f"{_where(exc, root)}: {exc}") from None
        return {"pid": os.getpid()}

    async def run(self, msg: dict[str, Any]) -> Any:
        assert self.conn is not None
        if self.module is None:  # a run sent with a load that failed: the engine knows why
            raise RuntimeError("the worker's code did not load")
        cls = getattr(self.module, msg["cls"])
        # As Cloudflare's tenant runtime gives it: a plain dict, a naive timestamp.
        event = TenantEvent(msg["event"])
        if isinstance(event.get("timestamp"), str):
            event["timestamp"] = datetime.fromisoformat(event["timestamp"])
        host = RemoteHost(
            self.conn, msg["run"], self.compatibility_date, grant=msg.get("grant") is True
        )
        step = TenantStep(host)
        try:
            return await cls(ExecutionContext(), self.env).run(event, step)
        finally:
            step.close()

    async def fetch(self, msg: dict[str, Any]) -> Any:
        r = msg["request"]
        request = Request(
            r["url"], method=r["method"], headers=r["headers"], body=bytes.fromhex(r["body"])
        )
        cls = getattr(self.module, msg.get("cls") or "Default", None)
        if cls is not None:
            response = await cls(ExecutionContext(), self.env).fetch(request)
        else:
            response = await self.module.on_fetch(request, self.env)
        return {"status": response.status, "headers": response.headers, "body": response.body.hex()}


# Modules a tenant's code commonly imports that are no part of this module's own imports:
# the template process imports them once, so no forked isolate pays for them.
TENANT_IMPORTS = ("js", "pyodide.ffi", "workers.workflows", "dataclasses", "enum", "typing")


def prepare_template() -> None:
    """Prepare the template: what every isolate needs before its tenant, done once.

    In the fork server (``_template_main``) this runs once, in the template process,
    before it forks any isolate; in the spawn path (non-Linux) each isolate runs it
    itself at start. Process-wide setup that is the same for every tenant belongs here;
    what is per isolate (its limits, its socket, its tenant) belongs to ``main``.
    """
    install()
    # A tenant's modules live in a folder removed when its isolate exits: compiled
    # files written next to them would never be read again.
    sys.dont_write_bytecode = True
    for name in TENANT_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    _event_loop().close()  # imports uvloop; the loop itself is made per isolate
    _warm_up_compiled()  # compiled here once, not by every spare
    resolve_step_config(None, step="template")  # the default config, worked out once


def enter_sandbox(
    root: Path, *, forked: bool = False, ruleset: int | None = None
) -> sandbox.Policy:
    """Put this isolate in the sandbox, before any tenant code is imported.

    The one place an isolate process confines itself: ``confine_shared`` (namespaces,
    ``no_new_privs``, the environment emptied) then ``confine_isolate`` (Landlock view of
    the runtime, ``root`` and the allowed folders; seccomp; rlimits). A fork server's
    template runs ``confine_shared`` once before forking (``forked``: this isolate is one of
    its children, so only ``confine_isolate`` is left); each isolate runs
    ``confine_isolate`` itself, as its pid and modules folder are its own. Call with every
    file descriptor the isolate needs already open and the environment already read,
    and before the event loop is made (uvloop would set up an io_uring the sandbox refuses).
    Under ``--sandbox=require`` a missing protection ends the process (the engine said
    so at start); under ``auto`` the engine's start-up notice named what is off.
    ``ruleset``: its Landlock ruleset, built by the template (``isolate_ruleset``).
    """
    policy = sandbox.policy_from_env()
    if not forked:
        sandbox.confine_shared(policy)
    sandbox.confine_isolate(policy, root, ruleset)
    return policy


@dataclass(frozen=True, slots=True)
class _Boot:
    """What an isolate reads from its environment at start, before the sandbox empties it."""

    sock: socket.socket
    doorbell: Doorbell | None
    root: Path
    policy: sandbox.Policy
    # The Landlock ruleset the template built for it (enforced and closed by now), if any.
    ruleset: int | None


# This process's, once ``_boot`` ran: the environment it came from is emptied by then.
BOOT: _Boot | None = None


def _boot(*, forked: bool = False) -> _Boot:
    """Everything before the event loop: limits, descriptors, the sandbox. The loop is
    made afterwards, so uvloop finds no io_uring to set up (the sandbox refuses it).

    A spawned isolate and one forked from the template both start here, with their
    settings in ``DYNWF_ISOLATE_*`` environment variables, after ``prepare_template``
    (in this process, or in the template it was forked from)."""
    # Its own session (so Ctrl-C does not hit it); if the engine is killed outright, a
    # tenant stuck in a CPU loop would never read the EOF on its socket.
    parent = os.environ.get("DYNWF_ISOLATE_PARENT")
    if parent:
        die_with_parent(int(parent))
    limit_mb = int(os.environ.get("DYNWF_ISOLATE_MEMORY_MB", "0"))
    if limit_mb:
        cap = limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sock = socket.socket(fileno=int(os.environ["DYNWF_ISOLATE_FD"]))
    bell = os.environ.get("DYNWF_ISOLATE_DOORBELL")
    doorbell = Doorbell.attach(int(bell)) if bell is not None else None
    # The engine made this folder and removes it when this process exits.
    given = os.environ.get("DYNWF_ISOLATE_ROOT")
    root = Path(given) if given else Path(tempfile.mkdtemp(prefix="dynwf-isolate-"))
    built = os.environ.get("DYNWF_ISOLATE_LANDLOCK_FD")  # the template built its ruleset
    ruleset = int(built) if built else None
    # Tenant output, print() or a bare write to fd 1, goes to the engine's stderr: the
    # engine's stdout may be a report or JSON (``dynwf run --json``).
    os.dup2(2, 1)
    sys.stdout = sys.stderr  # and as promptly as stderr (line-buffered, not block-buffered)
    global BOOT
    BOOT = _Boot(sock, doorbell, root, enter_sandbox(root, forked=forked, ruleset=ruleset), ruleset)
    return BOOT


async def main(boot: _Boot) -> None:
    worker = Worker(boot.root, boot.policy)
    conn = worker.conn = await Connection.open(boot.sock, worker.handle)
    conn.doorbell = boot.doorbell

    async def outbound(data: dict[str, Any]) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = await conn.request({"op": "outbound", "request": data})
        except RemoteError as exc:
            return {"error": exc.error}
        return answer

    set_channel(outbound)  # the tenant's fetch goes to the engine, its only way out
    await conn.closed


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (every step's round trip to the engine runs through
    this loop: uvloop's wake-up and dispatch take a fraction of asyncio's), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# A module shaped like a tenant's, imported and run once by a forked isolate before it
# takes a tenant (``warm_up``).
WARM_UP_MODULE = """
import json

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class WarmUpWorkflow(WorkflowEntrypoint):
    async def run(self, event, step):
        @step.do("first")
        async def first():
            return json.dumps(event["payload"])

        return {"first": await first()}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("warm")
"""


@functools.cache
def _warm_up_compiled() -> str:
    """``WARM_UP_MODULE`` as the engine sends compiled code; made once, by the template."""
    return base64.b64encode(marshal.dumps(compile(WARM_UP_MODULE, PLACEHOLDER, "exec"))).decode()


async def _warm_up_engine(msg: dict[str, Any]) -> Any:
    """The engine's side of a warm-up pass: every step runs once and is done."""
    if msg.get("method") == "do_begin":
        frozen = {"retries": {"limit": 0, "delay": 0, "backoff": "constant"}, "timeout": 60_000}
        return ["run", 1, frozen, 60_000]
    if msg.get("method") == "do_end":
        return ["done", msg["args"][3]]
    return None


def _claimed(fd: int) -> Callable[[], bool]:
    """Whether the engine has written to this isolate's socket: it was taken by a cold
    load, which then waits for what this process does first."""
    return lambda: bool(select.select([fd], [], [], 0)[0])


# How long a new spare waits to be taken before it warms up. In a burst of new tenants a
# spare is taken soon after its fork (at worst after the loads before it found slots),
# and a warm-up (some 6 ms of CPU per process, 2 more for its loop) would only slow the
# burst down: with 0.05 s, a quarter of a 300-tenant burst's isolates still warmed up,
# with 0.25 s none but the first spares. A spare nobody takes is warmed for the next
# cold load, which comes later.
WARM_UP_WAIT_S = 0.25


def should_warm_up(fd: int, wait_s: float = WARM_UP_WAIT_S) -> bool:
    """Whether a new spare warms up: not if a cold load takes it within ``wait_s``."""
    return not select.select([fd], [], [], wait_s)[0]


async def warm_up(where: Path, claimed: Callable[[], bool] = lambda: False) -> None:
    """Load and run a tenant-shaped module once, as the engine would have this isolate do,
    over a socket pair inside this process, in a folder removed afterwards.

    A forked isolate shares the template's memory until it writes to it, and each first
    write to a page is a page fault that copies it (tens of µs each on a VM): loading a
    tenant and running its first pass writes some 400 pages. A spare does that here,
    while it waits, instead of on the cold tenant's first step. What fails here only
    costs the warm-up. It stops as soon as ``claimed()``: in a burst of new tenants a
    spare is taken as soon as it is forked, and its load would wait for the warm-up
    (some 6 ms of CPU) to save less than it costs.
    """
    if claimed():
        return
    folder = where / ".warm-up"
    ours, theirs = socket.socketpair()
    worker = Worker(folder, sandbox.Policy("off"))  # what it loads is dynwf's own module
    try:
        folder.mkdir()
        engine = await Connection.open(theirs, _warm_up_engine)
        worker.conn = await Connection.open(ours, worker.handle)
        name = "_dynwf_warm_up.py"
        # Shaped as a cold load is: an env value and a workflow binding, the module sent
        # compiled as the engine sends code it has seen before (``_compiled``).
        code = {"mainModule": name, "modules": {name: WARM_UP_MODULE}, "env": {"NAME": "warm"}}
        bindings = ["WORKFLOWS"]
        load = {"op": "load", "code": code, "bindings": bindings, "optimize": sys.flags.optimize}
        await engine.request({**load, "compiled": {name: _warm_up_compiled()}})
        event = {"payload": {"k": 1}, "timestamp": "2026-04-01T00:00:00", "instanceId": "w"}
        if not claimed():
            # With the grant, as a cold load's run comes: its first step begins here.
            run = {"op": "run", "run": "w", "cls": "WarmUpWorkflow", "event": event, "grant": True}
            await engine.request(run)
        request = {"url": "http://localhost/", "method": "GET", "headers": {}, "body": ""}
        if not claimed():
            await engine.request({"op": "fetch", "cls": None, "request": request})
        await engine.close()
        await worker.conn.close()
        for _ in range(3):  # the transports' connection_lost callbacks run
            await asyncio.sleep(0)
    except Exception:  # an optimisation, never a reason to fail
        pass
    finally:
        ours.close()
        theirs.close()
        sys.modules.pop("_dynwf_warm_up", None)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _SourceFinder)]
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        importlib.invalidate_caches()
        del worker
        gc.collect()  # nothing of the warm-up is left for the tenant's code to find


def serve(forked: bool = False) -> None:
    """Run this isolate until the engine closes its socket (``main`` on a fresh loop).
    ``forked``: a child of the template, which ran ``confine_shared`` already; it first
    runs ``warm_up`` in its module folder (no tenant code: before its own sandbox),
    unless a cold load takes it at once (``should_warm_up``)."""
    root = os.environ.get("DYNWF_ISOLATE_ROOT")
    if forked and root:
        fd = int(os.environ["DYNWF_ISOLATE_FD"])
        claimed = _claimed(fd)
        if should_warm_up(fd):
            with asyncio.Runner(loop_factory=_event_loop) as runner:
                runner.run(warm_up(Path(root), claimed))
    booted = _boot(forked=forked)
    if forked:
        # A bare loop, not an asyncio.Runner: what a Runner adds (a SIGINT handler, the
        # clean-up of tasks and generators at the end) is of no use to a forked isolate,
        # which ends with os._exit when this returns, and it cost a burst of new tenants
        # ~1 ms of CPU each.
        _event_loop().run_until_complete(main(booted))
        return
    with asyncio.Runner(loop_factory=_event_loop) as runner:
        runner.run(main(booted))


if __name__ == "__main__":
    prepare_template()
    serve()
