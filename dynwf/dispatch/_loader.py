"""The Worker Loader (``env.LOADER``): load a tenant's code by id, cache it, run it isolated.

``get(id, create_proxy(get_code))`` returns the cached worker for ``id``; ``get_code()``
is called only when the id is not cached (first use, or after an eviction), and returns
``to_js({"compatibilityDate", "mainModule", "modules", "env"}, dict_converter=Object.fromEntries)``
with ``modules`` ``{name: source}`` or ``{name: {"py"|"text"|"json"|"data": ...}}``. Each
loaded worker runs in its own OS process (``isolation="process"``); ``"inline"``
runs it in the engine's process so breakpoints work.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import inspect
import itertools
import json
import logging
import os
import sys
import types
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Literal

from dynwf.compat._jsobject import JsMap, JsObject
from dynwf.compat.pyodide_ffi import JsDoubleProxy
from dynwf.dispatch._api import TenantWorkflowBinding, current_env, current_main, deprecated
from dynwf.dispatch._compiled import CompiledModules, optimize_level
from dynwf.dispatch._isolate import Isolate, IsolateLimits, IsolatePool
from dynwf.dispatch._outbound import INTERNET, Gateway, outbound_of
from dynwf.dispatch._protocol import HOST_CALLS, ONE_WAY, is_error
from dynwf.dispatch._wire import ConnectionLost, RemoteError
from dynwf.engine import PassInterrupted, PassParked, Step, WorkflowBinding
from dynwf.errors import DynwfError, ValidationError
from dynwf.workers import Request, Response
from dynwf.workers._context import ExecutionContext
from dynwf.workers._fetch import Channel, fetch_route
from dynwf.workers._http import JsRequest
from dynwf.workers._rpc import TenantWorkflows
from dynwf.workers._step import TenantStep

log = logging.getLogger("dynwf.dispatch")
Isolation = Literal["process", "inline"]
GetCode = Callable[[], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]
_runs = itertools.count(1)
# Seconds after a cold load before the next spare isolate boots: not during the
# tenant's import and first step (an interpreter boot takes a core for ~0.2 s).
SPARE_DELAY = 0.1
# How long the engine spins for an isolate's next message after answering a do_begin:
# the callback of a quick step and the isolate's way to its next step.
ANSWER_SPIN_S = 0.0003
# When the engine ends an attempt at its timeout, how long the isolate has to answer a
# ping before it counts as blocked (a callback spinning without awaiting) and is
# replaced. A free event loop answers in well under a millisecond; this leaves room for
# a busy machine, since a wrong kill costs the tenant's other passes their attempts.
BLOCKED_GRACE_S = 1.0
# Cold loads that may hold a new isolate process while they wait for a slot: enough for
# the template to fork the next ones while the engine loads one, few enough that a burst
# of new tenants does not start a process per tenant at once.
STARTING = 4
# While every isolate is busy, a cold load waiting for room is woken when one goes idle,
# and looks again this often anyway (for isolates that died meanwhile).
ROOM_POLL_S = 0.05
# How many times a request's load of a tenant's code may be cut by an LRU eviction.
FETCH_LOAD_TRIES = 5


class CodeLoadError(DynwfError):
    """A tenant's code failed to load (syntax or import error)."""


# A module file is created, never opened if something is there already (nor through a link).
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _write_modules(root: str, modules: Mapping[str, Any]) -> None:
    """Write a worker's modules (as ``_module`` gives them) into its isolate's folder.

    The engine writes them, before the load: the isolate imports its Python modules from
    the load message and only reads the files (its tenant may, as on Cloudflare), so it
    never holds write access to its own code. Names were checked by ``_module``; a file
    is only created (``O_EXCL``), never written through one or a link already there.
    """
    made = {root}
    for name, module in modules.items():
        path = os.path.join(root, name)
        folder = os.path.dirname(path)
        if folder not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        if isinstance(module, str):
            data = module.encode()
        elif "text" in module:
            data = module["text"].encode()
        elif "json" in module:
            data = json.dumps(module["json"]).encode()
        else:
            data = bytes.fromhex(module["data"])
        # os.open, not open(): no buffered file object on a cold load's path.
        fd = os.open(path, _CREATE, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def _check_code(id: str, code: Any) -> dict[str, Any]:
    if isinstance(code, JsMap):
        raise ValidationError(
            f"get_code() for worker {id!r} returned a JS Map: the Worker Loader reads fields "
            "of an object, so convert with to_js(code, dict_converter=Object.fromEntries)"
        )
    if isinstance(code, JsObject):
        code = code.to_py()
    elif isinstance(code, Mapping):
        deprecated(
            "returning a Python dict from the Worker Loader callback",
            "return to_js({...}, dict_converter=Object.fromEntries) "
            "(from pyodide.ffi import to_js; from js import Object)",
            stacklevel=2,
        )
    if not isinstance(code, Mapping):
        raise ValidationError(
            f"get_code() for worker {id!r} must return a dict, got {type(code).__name__}"
        )
    missing = {"mainModule", "modules"} - set(code)
    if missing:
        raise ValidationError(f"get_code() for worker {id!r} is missing {sorted(missing)}")
    modules = code["modules"]
    if not isinstance(modules, Mapping) or code["mainModule"] not in modules:
        raise ValidationError(
            f"get_code() for worker {id!r}: mainModule {code['mainModule']!r} is not in modules"
        )
    checked = {**code, "modules": {n: _module(id, n, m) for n, m in modules.items()}}
    checked["globalOutbound"] = outbound_of(id, checked)  # stays in the engine
    return checked


_MODULE_KINDS = ("py", "text", "json", "data")


def _module(id: str, name: str, module: Any) -> Any:
    """A module as sent to the isolate: Python source as a string, else ``{kind: value}``."""
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise ValidationError(
            f"get_code() for worker {id!r}: module name {name!r} must be a relative path "
            "inside the worker (like 'worker.py' or 'lib/util.py'), without '..'"
        )
    if isinstance(module, str):
        return module
    if isinstance(module, Mapping) and len(module) == 1:
        ((kind, value),) = module.items()
        if kind == "py" and isinstance(value, str):
            return value
        if kind == "text" and isinstance(value, str):
            return {"text": value}
        if kind == "json":
            return {"json": value}
        if kind == "data" and isinstance(value, (bytes, bytearray, memoryview)):
            return {"data": bytes(value).hex()}
    raise ValidationError(
        f"get_code() for worker {id!r}: module {name!r} must be source text or one of "
        + ", ".join(f'{{"{k}": ...}}' for k in _MODULE_KINDS)
    )


class WorkerLoader:
    """One ``[[worker_loaders]]`` binding."""

    def __init__(
        self,
        *,
        isolation: Isolation = "process",
        max_isolates: int = 64,
        idle_seconds: float = 300.0,
        limits: IsolateLimits | None = None,
        spin: bool = True,
    ) -> None:
        self.isolation = isolation
        # Spin briefly for each other's messages while one pass runs (``spin_hint``).
        self.spin = spin
        self.max_isolates = max_isolates
        self.limits = limits or IsolateLimits()
        self._workers: OrderedDict[str, WorkerStub] = OrderedDict()
        # The workers holding an isolate (``WorkerStub._isolate``), and when each was last
        # asked for: ``_make_room`` looks at these, not at every worker ever asked for (a
        # burst of new tenants makes thousands of those).
        self._holding: set[WorkerStub] = set()
        self._uses = itertools.count()
        self._pool = IsolatePool(self.limits, idle_seconds=idle_seconds, on_evict=self._idle_evict)
        self._gateway = Gateway(lambda: self.platform)  # the workers' outbound fetch calls
        self._compiled = CompiledModules()  # tenant modules the isolates need not compile
        self.loads = 0  # how many times code was loaded (for tests and the bench)
        self._slots = asyncio.Lock()  # cold loads take isolate slots one at a time
        self._went_idle = asyncio.Event()  # an isolate's last run or fetch ended
        self._starting = asyncio.Semaphore(STARTING)
        self._background: set[asyncio.Task[None]] = set()
        # The platform worker this binding belongs to: (env, main module getter), set
        # around callbacks so the dispatcher's code sees its own env and exports.
        self.platform: tuple[Any, Callable[[], types.ModuleType | None]] | None = None
        # For ids that name a code version ("tenant:version"): the id and code that
        # replace a loaded one after a save, so hot reload moves it as it moves others.
        self.successor: Callable[[str], tuple[str, dict[str, Any]] | None] | None = None

    def warm(self, delay: float = 0.0) -> None:
        """Start a spare isolate in the background (process isolation only)."""
        if self.isolation == "process":
            self._pool.warm(delay)

    def get(self, id: str, get_code: GetCode) -> WorkerStub:
        if not isinstance(get_code, JsDoubleProxy):
            deprecated(
                "env.LOADER.get(id, <a Python callable>)",
                "env.LOADER.get(id, create_proxy(get_code)) (from pyodide.ffi import create_proxy)",
            )
        stub = self._workers.get(id)
        if stub is None:
            stub = WorkerStub(self, id, get_code)
            self._workers[id] = stub
        else:
            stub._get_code = get_code  # the latest dispatcher's closure, for reloads
        self._workers.move_to_end(id)
        stub._used = next(self._uses)
        return stub

    async def reload(self) -> dict[str, str | None]:
        """Reload every loaded worker whose code changed: ``{id: error or None}``."""
        results: dict[str, str | None] = {}
        for id, stub in list(self._workers.items()):
            moved = self.successor(id) if self.successor is not None else None
            if moved is not None:
                if moved[0] in self._workers:  # the new version is loaded already
                    stub._interrupt_runs()  # its passes replay on it
                    continue
                id = self._rename(stub, *moved)
            outcome = await stub.reload()
            if outcome != "unchanged":
                results[id] = None if outcome == "reloaded" else outcome
        return results

    def _rename(self, stub: WorkerStub, new_id: str, update: dict[str, Any]) -> str:
        """Load ``stub`` as ``new_id`` with ``update`` over its code: the dispatcher asks
        for the new id next, and finds it loaded (or its load error)."""
        del self._workers[stub.id]
        stub.id = new_id
        self._workers[new_id] = stub
        stub._used = next(self._uses)
        base = dict(stub._code or {})
        stub._get_code = lambda: JsObject({**base, **update})
        return new_id

    def loaded(self) -> list[str]:
        return list(self._workers)

    def serving(self, uid: str) -> list[str]:
        """Ids of the loaded workers running a pass of instance ``uid`` right now."""
        return [
            id
            for id, stub in self._workers.items()
            if any(
                getattr(getattr(host, "st", None), "uid", None) == uid
                for host, _ in stub._runs.values()
            )
        ]

    async def evict(self, id: str) -> bool:
        """Drop worker ``id``: its isolate stops, the next ``get`` loads the code again."""
        stub = self._workers.pop(id, None)
        if stub is None:
            return False
        await stub.unload()
        return True

    async def evict_all(self) -> None:
        for id in list(self._workers):
            await self.evict(id)

    async def _idle_evict(self, iso: Isolate) -> None:
        for id, stub in list(self._workers.items()):
            if stub._isolate is iso:
                log.info("worker %r evicted after %.0f s idle", id, self._pool.idle_seconds)
                await self.evict(id)

    async def _make_room(self) -> None:
        """Evict least recently used isolates until one more fits, idle ones first.

        If every isolate is busy, wait up to 5 s for one to go idle; after that the
        oldest is evicted anyway (its passes are interrupted and replay elsewhere).
        """
        deadline = asyncio.get_running_loop().time() + 5.0
        while True:
            live = sorted(
                (s for s in self._holding if s._isolate is not None and s._isolate.alive),
                key=lambda s: s._used,  # least recently asked for first
            )
            if len(live) < self.max_isolates:
                return
            idle = [s for s in live if s._isolate is not None and not s._isolate.busy]
            if idle or asyncio.get_running_loop().time() > deadline:
                await self.evict((idle or live)[0].id)
            else:
                # Until an isolate goes idle (``_done_with``); a process that dies is seen
                # on the next look.
                self._went_idle.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(ROOM_POLL_S):
                        await self._went_idle.wait()

    def _done_with(self, iso: Isolate) -> None:
        """A run, fetch or load in ``iso`` ended: one less keeping it from eviction."""
        iso.busy -= 1
        if not iso.busy:
            self._went_idle.set()

    async def close(self) -> None:
        await self.evict_all()
        await self._pool.close()
        await self._gateway.close()
        self._compiled.close()

    def replace_if_blocked(self, iso: Isolate, id: str, key: str) -> None:
        """The engine ended an attempt of ``key`` in ``iso`` at its timeout: if the isolate
        cannot answer a ping within ``BLOCKED_GRACE_S``, its event loop is blocked (the
        callback spins), so kill it; the worker's next use starts a fresh one."""

        async def check() -> None:
            if not await iso.responsive(BLOCKED_GRACE_S):
                iso.kill(
                    f"worker {id!r}: step {key} did not stop at its timeout (its code blocks "
                    "the event loop); a fresh isolate replaces it"
                )

        task = asyncio.get_running_loop().create_task(check())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def spin_hint(self, iso: Isolate, engine: Any) -> bool:
        """Whether the engine and ``iso`` should spin for each other's messages now.

        Yes while the engine runs a single pass and a core is idle for it: each
        isolated step is then a round trip whose latency is the whole cost, and waking
        a sleeping process costs more than the wait. With more passes the engine has
        other work; with no idle core a spinner takes CPU from someone who needs it.
        The answer is also written to the isolate's doorbell.
        """
        alone = self.spin and getattr(engine, "passes_running", 0) == 1 and self._pool.idle_core
        if iso.conn.doorbell is not None:
            iso.conn.doorbell.hint = alone
        return alone


class WorkerStub:
    """A loaded worker: ``get_entrypoint(name)`` gives a class or the default handler."""

    def __init__(self, loader: WorkerLoader, id: str, get_code: GetCode) -> None:
        self.loader, self.id, self._get_code = loader, id, get_code
        self._code: dict[str, Any] | None = None
        self._used = 0  # when the loader last gave it out (its LRU order)
        self._held: Isolate | None = None
        self._module: types.ModuleType | None = None
        self._lock = asyncio.Lock()
        self._bindings: dict[str, Any] = {}
        self._runs: dict[str, Any] = {}
        self.broken: str | None = None  # the load error of the newest code, if it failed

    @property
    def _isolate(self) -> Isolate | None:
        """The isolate running (or loading) this worker's code."""
        return self._held

    @_isolate.setter
    def _isolate(self, iso: Isolate | None) -> None:
        self._held = iso
        if iso is None:
            self.loader._holding.discard(self)
        else:
            self.loader._holding.add(self)

    def getEntrypoint(self, name: str | None = None, options: Any = None) -> EntrypointStub:
        return EntrypointStub(self, name)

    def get_entrypoint(self, name: str | None = None) -> EntrypointStub:
        deprecated("stub.get_entrypoint(name)", "stub.getEntrypoint(name)")
        return EntrypointStub(self, name)

    async def _call_get_code(self) -> Any:
        """Call the dispatcher's callback as the platform worker (its env, its exports)."""
        platform = self.loader.platform
        if platform is None:
            code = self._get_code()
            return await code if inspect.isawaitable(code) else code
        env_token = current_env.set(platform[0])
        main_token = current_main.set(platform[1])
        try:
            code = self._get_code()
            return await code if inspect.isawaitable(code) else code
        finally:
            current_main.reset(main_token)
            current_env.reset(env_token)

    async def _fresh_code(self) -> dict[str, Any]:
        return _check_code(self.id, await self._call_get_code())

    async def reload(self) -> str:
        """Load the worker's current code; "unchanged", "reloaded" or the load error.

        On an error the last good version keeps answering requests, while workflow
        passes park (wait) until the code loads again.
        """
        try:
            code = await self._fresh_code()
        except Exception as exc:
            return self._fail(f"get_code() failed: {type(exc).__name__}: {exc}")
        if code == self._code and self.broken is None:
            return "unchanged"
        old_iso, old_module, old_code = self._isolate, self._module, self._code
        self._code, self._isolate, self._module = code, None, None
        try:
            if self.loader.isolation == "inline":
                self.module()
            else:
                await self.isolate()
        except (CodeLoadError, Exception) as exc:
            self._code, self._isolate, self._module = old_code, old_iso, old_module
            return self._fail(str(exc))
        self.broken = None
        self._interrupt_runs()
        if old_iso is not None:
            drain = asyncio.create_task(self._drain(old_iso))
            self.loader._background.add(drain)
            drain.add_done_callback(self.loader._background.discard)
        return "reloaded"

    def _fail(self, error: str) -> str:
        self.broken = error
        self._interrupt_runs()  # running passes end at their next step and park
        return error

    def _interrupt_runs(self) -> None:
        for host, _iso in list(self._runs.values()):
            interrupt = getattr(host, "interrupt", None)
            if interrupt is not None:
                interrupt()

    async def _drain(self, iso: Isolate) -> None:
        """Close a replaced isolate once no pass runs in it any more."""
        while any(i is iso for _h, i in self._runs.values()):
            await asyncio.sleep(0.05)
        await iso.close()

    async def _code_dict(self) -> dict[str, Any]:
        if self._code is None:
            self._code = _check_code(self.id, await self._call_get_code())
            self.loader.loads += 1
        return self._code

    def _split_env(self, env: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        plain, bindings = {}, {}
        for k, v in env.items():
            if isinstance(v, (TenantWorkflowBinding, WorkflowBinding)):
                bindings[k] = v
            else:
                plain[k] = v
        return plain, bindings

    async def isolate(self, then: Callable[[Isolate], None] | None = None) -> Isolate:
        """The isolate running this worker's code, loaded now if it is not.

        ``then(iso)`` is called when the code is loaded now, right after the load
        request is queued, so what it sends (a pass's ``run``) goes out in the same
        write and the isolate runs it as soon as the code is imported, without a
        round trip in between; ``iso`` may still fail to load (the returned isolate is
        then another one, or this raises).
        """
        async with self._lock:
            if self._isolate is not None and self._isolate.usable():
                self._isolate.last_used = asyncio.get_running_loop().time()
                return self._isolate
            code = await self._code_dict()
            plain, self._bindings = self._split_env(code.get("env") or {})
            # A process that exits before its load answers may have died before the
            # code ran (a spare killed while it waited): one more try, in a new process.
            for tries_left in (1, 0):
                try:
                    iso = await self._load(code, plain, then)
                except ConnectionLost:
                    if tries_left:
                        log.info("worker %r: its isolate exited while loading; again", self.id)
                        continue
                    detail = "the process exited while loading, twice"
                    raise CodeLoadError(f"worker {self.id!r} failed to load: {detail}") from None
                self.loader.warm(SPARE_DELAY)  # the next cold load finds a booted spare
                return iso
            raise AssertionError("unreachable")

    async def _load(
        self,
        code: dict[str, Any],
        plain: dict[str, Any],
        then: Callable[[Isolate], None] | None = None,
    ) -> Isolate:
        """Start an isolate and load the code in it; ``ConnectionLost`` if the process exits."""
        # A process first (forked ahead, up to STARTING at once, so the template forks
        # the next tenants' while this one waits for its slot), then the slot.
        async with self.loader._starting:
            iso = await self.loader._pool.start(self._serve, self._serve_now)
            try:
                async with self.loader._slots:
                    await self.loader._make_room()
                    self._isolate = iso  # holds the slot while the code loads
            except BaseException:  # cancelled while waiting: the process is nobody's
                await iso.close(wait=False)
                raise
        iso.worker, iso.bindings = self.id, frozenset(self._bindings)
        iso.busy += 1  # not idle, so another cold load's _make_room does not evict it
        try:
            if iso.root:
                try:
                    _write_modules(iso.root, code["modules"])
                except OSError as exc:
                    if not iso.alive:  # its folder went with it
                        raise ConnectionLost("the isolate exited before its load") from None
                    error = {"name": type(exc).__name__, "message": f"writing its modules: {exc}"}
                    raise RemoteError(error) from None
            sent = {k: v for k, v in code.items() if k != "globalOutbound"}
            load: dict[str, Any] = {
                "op": "load",
                "code": {**sent, "env": plain},
                "bindings": sorted(self._bindings),
            }
            compiled = self.loader._compiled.lookup(code["modules"])
            if compiled:
                load["compiled"], load["optimize"] = compiled, optimize_level()
            loaded = iso.conn.send_request(load, flush=then is None)
            if then is not None:
                then(iso)  # sends with the load, in one write
            await loaded
        except (RemoteError, ConnectionLost) as exc:
            self._isolate = None
            self.loader.warm(SPARE_DELAY)
            if isinstance(exc, ConnectionLost) and iso.killed_for is not None:
                raise PassInterrupted(f"worker {self.id!r} was evicted while loading") from None
            iso.kill("its code failed to load", quiet=True)
            if isinstance(exc, ConnectionLost):
                raise
            detail = f"{exc.error.get('name')}: {exc.error.get('message')}"
            raise CodeLoadError(f"worker {self.id!r} failed to load: {detail}") from None
        finally:
            self.loader._done_with(iso)
        self._isolate = iso
        return iso

    def module(self) -> types.ModuleType:
        if self._module is None:
            assert self._code is not None
            self._module = _load_inline(self.id, self._code)
        return self._module

    async def unload(self) -> None:
        iso, self._isolate, self._module = self._isolate, None, None
        if iso is not None:
            await iso.close(wait=False)  # the pool's close waits for every process

    def _outbound_channel(self) -> Channel:
        """Where this worker's ``fetch`` calls go: the loader's gateway, as its
        ``globalOutbound`` says (an inline worker's, as an isolate's over its socket)."""

        async def send(data: dict[str, Any]) -> Any:
            outbound = (self._code or {}).get("globalOutbound", INTERNET)
            return await self.loader._gateway.send(self.id, outbound, data)

        return send

    # -- requests from the isolate ----------------------------------------------------
    async def _serve(self, msg: dict[str, Any]) -> Any:
        if msg["op"] == "host":
            return await self._host_call(msg)
        if msg["op"] == "binding":
            return await self._binding_call(msg)
        if msg["op"] == "outbound":
            return await self._outbound_channel()(msg["request"])
        raise ValueError(f"unknown request {msg['op']!r} from worker {self.id!r}")

    def _serve_now(self, msg: dict[str, Any]) -> bool:
        """Take the step calls of the hot path in the callback that read them, with no task.

        A step's successful result (sent one way) is recorded at once. A ``do_begin``
        that ``begin_now`` can answer is answered now (a replay) or right after the
        commit of its attempt fact. Anything else, or a pass that has ended, goes to
        ``_serve`` in a task.
        """
        if msg.get("op") != "host":
            return False
        run = self._runs.get(msg.get("run"))  # type: ignore[arg-type]
        if run is None:
            # A one-way step report of a pass that already ended (cancelled, timed out):
            # nothing to record it in.
            return msg.get("id") is None and msg.get("method") in ONE_WAY
        host, iso = run
        method, args, n = msg.get("method"), msg["args"], msg.get("id")
        if method == "began" and n is None:
            host.began(args[0], args[1])  # here, not in a task: before the do_end after it
            return True
        if method == "granted":
            try:
                ok = host.begin_granted(*args)
            except Exception as exc:  # a config the isolate accepted and the engine does not
                ok, why = False, f"{type(exc).__name__}: {exc}"
            else:
                why = "it is not the pass's first step"
            if not ok:
                iso.kill(f"worker {self.id!r} began step {args[0]!r} on a grant: {why}")
            else:
                iso.attempt_started(f"{msg['run']}:{args[0]}")
            return True
        if method == "do_end" and args[0] not in host.inflight | host.timed_out:
            # (a late result of an attempt the engine timed out is expected, and ignored)
            iso.kill(
                f"worker {self.id!r} sent the result of step {args[0]!r}, which is not running"
            )
            return True
        if method == "do_end" and n is None and args[2]:
            host.do_done(args[0], args[1], args[3])
            iso.attempt_ended(f"{msg['run']}:{args[0]}")
            return True
        if method != "do_begin" or n is None:
            return False
        answer = host.begin_now(*args)
        if answer is None:
            return False
        if answer[0] != "run":
            iso.conn.answer(n, list(answer))
            return True
        token = msg["run"]
        iso.attempt_started(f"{token}:{args[0]}")  # its CPU counts from now: it may spin at once

        def durable(error: BaseException | None) -> None:
            if token not in self._runs:
                return  # the pass ended meanwhile (as an awaited do_begin is cancelled)
            alone = self.loader.spin_hint(iso, host.engine)
            iso.conn.answer(n, list(answer), error)
            if alone:
                iso.conn.expect(ANSWER_SPIN_S)

        host.engine.when_durable(durable)
        return True

    async def _host_call(self, msg: dict[str, Any]) -> Any:
        run = self._runs.get(msg["run"])
        if run is None:
            raise RuntimeError("this run pass has ended")
        host, iso = run
        task = asyncio.current_task()
        assert task is not None
        host_tasks: set[asyncio.Task[Any]] = run_tasks(host)
        host_tasks.add(task)
        method, args = msg["method"], msg["args"]
        if method not in HOST_CALLS:  # the isolate checked it already (_protocol.check)
            raise ValueError(f"unknown step-host method {method!r}")
        token = f"{msg['run']}:{args[0]}"
        try:
            result = await getattr(host, method)(*args)
        finally:
            host_tasks.discard(task)
        if method == "do_begin" and result[0] == "run":
            iso.attempt_started(token)
        elif method == "do_end":
            iso.attempt_ended(token)
        return list(result) if isinstance(result, tuple) else result

    async def _binding_call(self, msg: dict[str, Any]) -> Any:
        binding = self._bindings.get(msg["binding"])
        if binding is None:
            raise LookupError(f"worker {self.id!r} has no binding {msg['binding']!r}")
        method, args = msg["method"], msg["args"]
        if msg["kind"] == "binding":
            if method == "create":
                return (await binding.create(args[0])).id
            if method == "create_batch":
                made = await binding.create_batch(args[0])
                if isinstance(made, dict):
                    return {**made, "created": [i.id for i in made["created"]]}
                return [i.id for i in made]
            if method == "get":
                return (await binding.get(args[0])).id
            if method == "delete_batch":
                return await binding.delete_batch(args[0])
        elif method in {
            "status",
            "pause",
            "resume",
            "terminate",
            "restart",
            "send_event",
            "delete",
        }:
            inst = await binding.get(args[0])
            return await getattr(inst, method)(*args[1:])
        raise ValueError(f"unknown binding call {method!r}")


def _tenant_env(code: Mapping[str, Any] | None) -> types.SimpleNamespace:
    """An inline tenant's ``env``: Workflow bindings wrapped as Cloudflare's tenant SDK wraps them."""
    env = dict((code or {}).get("env") or {})
    for name, value in env.items():
        if isinstance(value, (TenantWorkflowBinding, WorkflowBinding)):
            env[name] = TenantWorkflows(value)
    return types.SimpleNamespace(**env)


def run_tasks(host: Any) -> set[asyncio.Task[Any]]:
    tasks: set[asyncio.Task[Any]] | None = getattr(host, "_remote_tasks", None)
    if tasks is None:
        tasks = set()
        host._remote_tasks = tasks
    return tasks


class EntrypointStub:
    """A class of a loaded worker: ``await run(event, step)`` or ``await fetch(request)``."""

    def __init__(self, worker: WorkerStub, name: str | None) -> None:
        self.worker, self.name = worker, name

    async def run(self, event: Any, step: Step) -> Any:
        w = self.worker
        if w.broken is not None:
            raise PassParked(f"worker {w.id!r}: {w.broken}")
        if w.loader.isolation == "inline":
            try:
                await w._code_dict()
                module = w.module()
            except Exception as exc:
                w.broken = _failure(exc)
                raise PassParked(f"worker {w.id!r}: {w.broken}") from None
            cls = _entry_class(module, self.name, w.id)
            env = _tenant_env(w._code)
            token = f"r{next(_runs)}"
            w._runs[token] = (step.host, None)
            # The tenant's own step object, as in an isolate: errors and wait_for_event
            # results as Cloudflare's tenant SDK gives them.
            own = TenantStep(step.host)
            route = fetch_route.set(w._outbound_channel())
            try:
                return await cls(ExecutionContext(), env).run(event, own)
            finally:
                fetch_route.reset(route)
                own.close()
                w._runs.pop(token, None)
        token = f"r{next(_runs)}"
        payload = {**event, "timestamp": _iso(event.get("timestamp"))}
        # The run requests sent, one per isolate tried: a cold load sends the run with
        # the code (``isolate(then=...)``), and a process that dies while loading is
        # replaced by another, which is sent the run again.
        sent: list[tuple[Isolate, int, asyncio.Future[Any]]] = []

        def send(iso: Isolate) -> None:
            w._runs[token] = (step.host, iso)
            if hasattr(step.host, "on_timeout"):
                step.host.on_timeout = lambda key: w.loader.replace_if_blocked(iso, w.id, key)
            iso.busy += 1
            w.loader.spin_hint(iso, getattr(step.host, "engine", None))
            n = iso.conn.request_id()
            msg: dict[str, Any] = {"op": "run", "run": token, "cls": self.name, "event": payload}
            grant = getattr(step.host, "grant_first_step", None)
            if grant is not None and grant():
                msg["grant"] = True  # its first step.do begins without a round trip
            sent.append((iso, n, iso.conn.send_request(msg, id=n)))

        try:
            try:
                iso = await w.isolate(then=send)
            except CodeLoadError as exc:
                w.broken = str(exc)
                raise PassParked(str(exc)) from None
            except Exception as exc:  # get_code() failed or returned no usable code
                w._code = None  # ask get_code again on the next pass
                raise PassParked(f"worker {w.id!r}: {_failure(exc)}") from None
            if not sent or sent[-1][0] is not iso:
                send(iso)  # it was loaded already
            try:
                return await sent[-1][2]
            except ConnectionLost:
                if not iso.closing:
                    # Not evicted: the process died or was killed for what its code did. A
                    # callback told to run that never reported beginning ran into it (it
                    # exits, spins or blows up before its first suspension point): it counts.
                    lost = getattr(step.host, "callbacks_lost", None)
                    if lost is not None:
                        lost()
                reason = iso.killed_for or "its process exited"
                raise PassInterrupted(f"worker {w.id!r} isolate stopped: {reason}") from None
            except RemoteError as exc:
                from dynwf.engine import error_from_dict

                if not is_error(exc.error):
                    iso.kill(f"worker {w.id!r} ended a run with a malformed error")
                    raise PassInterrupted(f"worker {w.id!r} sent a malformed error") from None
                raise error_from_dict(exc.error) from None
        except asyncio.CancelledError:
            for tried, n, reply in sent:
                if (not reply.done() or reply.cancelled()) and tried.alive:
                    tried.conn.notify({"op": "cancel", "target": n})
            raise
        finally:
            w._runs.pop(token, None)
            for tried, _n, reply in sent:
                w.loader._done_with(tried)
                tried.run_ended(token)
                if tried.conn.doorbell is not None:
                    tried.conn.doorbell.hint = False  # until a pass runs in it again
                if reply.done() and not reply.cancelled():
                    reply.exception()  # one whose load failed: its error is the load's
                else:
                    reply.cancel()
            for task in run_tasks(step.host):
                task.cancel()

    async def fetch(self, request: Request | JsRequest) -> Response:
        if isinstance(request, JsRequest):
            request = request.request
        else:
            deprecated(
                "entrypoint.fetch(request) with the Python Request",
                "entrypoint.fetch(request.js_object)",
            )
        w = self.worker
        if w.loader.isolation == "inline":
            await w._code_dict()
            module = w.module()
            env = _tenant_env(w._code)
            cls = getattr(module, self.name or "Default", None)
            route = fetch_route.set(w._outbound_channel())
            try:
                if cls is not None:
                    return await cls(ExecutionContext(), env).fetch(request)  # type: ignore[no-any-return]
                return await module.on_fetch(request, env)  # type: ignore[no-any-return]
            finally:
                fetch_route.reset(route)
        for _ in range(FETCH_LOAD_TRIES):
            try:
                iso = await w.isolate()
                break
            except PassInterrupted:
                # Evicted while its code loaded: more tenants run now than max_isolates
                # (a pass needing another tenant took the slot). A request is no pass
                # that the engine runs again later: load the code again for it.
                continue
        else:
            return Response(
                f"worker {w.id!r} was evicted while loading {FETCH_LOAD_TRIES} times: more "
                "tenants are busy than the loader's max_isolates; retry, or raise it",
                status=503,
            )
        body = await request.bytes()
        iso.busy += 1
        n = iso.conn.request_id()
        # The request's CPU counts against limits.cpu_ms as a step attempt's does: the
        # pool's watchdog kills an isolate whose request spins past it.
        iso.attempt_started(f"fetch:{n}")
        try:
            out = await iso.conn.request(
                {
                    "op": "fetch",
                    "cls": self.name,
                    "request": {
                        "url": request.url,
                        "method": request.method,
                        "headers": request.headers,
                        "body": body.hex(),
                    },
                },
                id=n,
            )
        except ConnectionLost:
            if iso.over_cpu_limit:
                return _over_cpu(w.id, w.loader.limits.cpu_ms)
            return Response("the tenant's worker crashed while handling this request", status=502)
        except RemoteError as exc:
            return Response(f"{exc.error.get('name')}: {exc.error.get('message')}", status=500)
        finally:
            iso.attempt_ended(f"fetch:{n}")
            w.loader._done_with(iso)
        response = _response(out)
        if response is None:
            iso.kill(f"worker {w.id!r} answered a request with a malformed response")
            return Response("the tenant's worker sent a malformed response", status=502)
        return response


def _over_cpu(id: str, cpu_ms: int) -> Response:
    """What Cloudflare answers when a request exceeds its CPU limit (error 1102), with why."""
    return Response(
        "Error 1102: Worker exceeded resource limits\n\n"
        f"worker {id!r} used more than {cpu_ms} ms of CPU time on this request "
        "(limits.cpu_ms in the wrangler config); its isolate was stopped and is replaced "
        "on the next request.\n",
        status=503,
        headers={"content-type": "text/plain; charset=utf-8"},
    )


def _response(out: Any) -> Response | None:
    """The isolate's answer to a ``fetch``, or None when it is not one."""
    if not isinstance(out, dict):
        return None
    status, headers, body = out.get("status"), out.get("headers"), out.get("body")
    if type(status) is not int or not 100 <= status <= 599 or not isinstance(body, str):
        return None
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        return None
    try:
        return Response(bytes.fromhex(body), status=status, headers=headers)
    except (ValueError, TypeError):
        return None


def _failure(exc: BaseException) -> str:
    if isinstance(exc, (CodeLoadError, ValidationError)):
        return str(exc)
    return f"loading its code failed: {type(exc).__name__}: {exc}"


def _iso(ts: Any) -> Any:
    return ts.isoformat() if isinstance(ts, datetime) else ts


def _entry_class(module: types.ModuleType, name: str | None, id: str) -> Any:
    cls = getattr(module, name or "Default", None)
    if cls is None:
        raise LookupError(f"worker {id!r} has no entrypoint class {name or 'Default'!r}")
    return cls


def _load_inline(id: str, code: Mapping[str, Any]) -> types.ModuleType:
    """Execute a worker's modules in this process under private names (debug mode).

    Sibling imports made while the main module loads resolve to this worker's own
    modules; the names never enter ``sys.modules`` as bare names, so two tenants'
    ``helpers`` modules do not collide.
    """
    prefix = f"_dynwf_worker_{abs(hash(id)):x}"
    modules: dict[str, types.ModuleType] = {}
    sources = {n[:-3]: s for n, s in code["modules"].items() if n.endswith(".py")}

    class _Finder:
        @staticmethod
        def find_spec(fullname: str, path: Any = None, target: Any = None) -> Any:
            if fullname in sources:
                return importlib.machinery.ModuleSpec(fullname, _Loader())
            return None

    class _Loader(importlib.abc.Loader):
        def create_module(self, spec: Any) -> types.ModuleType:
            return load(spec.name)

        def exec_module(self, module: types.ModuleType) -> None:
            pass

    def load(name: str) -> types.ModuleType:
        if name not in modules:
            mod = types.ModuleType(f"{prefix}.{name}")
            modules[name] = mod
            exec(compile(sources[name], f"{id}/{name}.py", "exec"), mod.__dict__)
        return modules[name]

    main = code["mainModule"]
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    saved = {n: sys.modules.pop(n) for n in sources if n in sys.modules}
    try:
        return load(main[:-3] if main.endswith(".py") else main)
    finally:
        sys.meta_path.remove(finder)
        for n in sources:
            sys.modules.pop(n, None)
        sys.modules.update(saved)
