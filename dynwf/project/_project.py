"""Load a project (wrangler config + dispatcher ``main``) into an engine, ready to serve.

The dispatcher runs in the engine's process; tenant code runs in isolates through the
``[[worker_loaders]]`` bindings. State lives in ``<project>/.dynwf/`` unless
``persist_to`` (or ``DYNWF_PERSIST_TO``) says otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import types
from pathlib import Path
from typing import Any

from dynwf.config import ProjectConfig, load_config
from dynwf.dispatch import IsolateLimits, WorkerLoader, current_env
from dynwf.dispatch._api import PlatformExports, current_main
from dynwf.dispatch._loader import Isolation
from dynwf.engine import DEFAULT_COMPATIBILITY_DATE, Engine, EntrypointProgram, Workflow
from dynwf.errors import DynwfError
from dynwf.project._kv import TENANT_CODE_BINDING, TenantCodeNamespace, newer_version
from dynwf.project._schedules import Scheduler
from dynwf.workers import Request, Response, install
from dynwf.workers._context import ExecutionContext

log = logging.getLogger("dynwf.project")


class ProjectError(DynwfError):
    """The project's dispatcher cannot be loaded or lacks what the config names."""


def state_dir_for(root: Path, persist_to: str | Path | None = None) -> Path:
    chosen = persist_to or os.environ.get("DYNWF_PERSIST_TO")
    return Path(chosen).resolve() if chosen else root / ".dynwf"


class Env(types.SimpleNamespace):
    """The platform worker's ``self.env``: workflow bindings, loaders, vars."""


class Project:
    def __init__(
        self,
        config: ProjectConfig,
        *,
        persist_to: str | Path | None = None,
        isolation: Isolation = "process",
        max_isolates: int = 64,
        idle_seconds: float = 300.0,
        limits: IsolateLimits | None = None,
        **engine_kwargs: Any,
    ) -> None:
        self.config = config
        self.root = config.path.parent
        self.state_dir = state_dir_for(self.root, persist_to)
        self.engine = Engine(self.state_dir / "journal.duckdb", **engine_kwargs)
        self.env = Env()
        cpu = config.cpu_ms if getattr(config, "cpu_ms", None) else None
        lim = limits or IsolateLimits(cpu_ms=cpu or IsolateLimits().cpu_ms)
        self.loaders = {
            wl.binding: WorkerLoader(
                isolation=isolation,
                max_isolates=max_isolates,
                idle_seconds=idle_seconds,
                limits=lim,
            )
            for wl in config.worker_loaders
        }
        self.main: types.ModuleType | None = None
        self._programs: dict[str, EntrypointProgram] = {}
        self.exports = PlatformExports(self.env, lambda: self.main)
        self.scheduler = Scheduler(self)  # fires cron schedules while `dynwf dev` runs it

    @property
    def compatibility_date(self) -> str:
        d = self.config.compatibility_date
        return d.isoformat() if d is not None else DEFAULT_COMPATIBILITY_DATE

    @classmethod
    def load(cls, path: str | Path = ".", **kwargs: Any) -> Project:
        return cls(load_config(path), **kwargs)

    # -- dispatcher ----------------------------------------------------------------------
    def import_main(self) -> types.ModuleType:
        """(Re)import the dispatcher module named by ``main``."""
        install()
        if self.config.main is None:
            raise ProjectError(
                f"{self.config.path}: no 'main' is set; point it at the dispatcher module"
            )
        path = (self.root / self.config.main).resolve()
        if str(path.parent) not in sys.path:
            # The dispatcher is the platform's own code; tenant code never shares this path.
            sys.path.insert(0, str(path.parent))
        name = f"_dynwf_main_{abs(hash(str(path))):x}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ProjectError(f"cannot import the dispatcher {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            raise ProjectError(
                f"{exc.filename}:{exc.lineno}: syntax error in the dispatcher: {exc.msg}"
            ) from exc
        except Exception as exc:
            tb = exc.__traceback__
            while tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else str(path)
            raise ProjectError(
                f"{where}: the dispatcher failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        return module

    def _bind(self, main: types.ModuleType) -> None:
        for wf in self.config.workflows:
            if wf.script_name:
                continue
            cls = getattr(main, wf.class_name, None)
            if cls is None:
                raise ProjectError(
                    f"{self.config.main}: no class {wf.class_name!r} (workflow {wf.name!r} names it "
                    "as class_name); define or export it"
                )
            prog = self._programs.get(wf.name)
            if prog is None:
                prog = self._programs[wf.name] = EntrypointProgram(
                    cls, self.env, ExecutionContext(exports=self.exports)
                )
                self.engine.register(
                    Workflow(
                        wf.name,
                        wf.binding,
                        prog,
                        class_name=wf.class_name,
                        compatibility_date=self.compatibility_date,
                        step_limit=wf.step_limit or 10_000,
                        concurrency_limit=wf.concurrency_limit,
                    )
                )
            else:
                prog.cls = cls  # hot reload: the next pass uses the new class
        self.main = main

    def reload_main(self, files: tuple[str, ...] = ()) -> str | None:
        """Re-import the dispatcher if one of ``files`` (all, if empty) is outside tenants'
        loaded code; returns the error text, or None. On error the old one keeps serving."""
        main_dir = (self.root / (self.config.main or "")).resolve().parent
        if files and not any(Path(f).resolve().parent == main_dir for f in files):
            return None
        try:
            main = self.import_main()
            self._bind(main)
        except ProjectError as exc:
            return str(exc)
        return None

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Import the dispatcher, open the journal and recover, then boot a spare isolate.

        The journal is opened before any isolate process starts: a journal that is
        held, damaged or missing data is refused at once, with nothing to clean up.
        """
        main = self.import_main()
        for name, loader in self.loaders.items():
            setattr(self.env, name, loader)
            loader.platform = (self.env, lambda: self.main)
        if (self.root / "tenants").is_dir() and not hasattr(self.env, TENANT_CODE_BINDING):
            # Where a deployed dispatcher reads tenant code (a KV namespace), served from
            # the tenants/ folder as it is at each read.
            setattr(self.env, TENANT_CODE_BINDING, TenantCodeNamespace(self.root))
            for loader in self.loaders.values():
                loader.successor = lambda id: newer_version(self.root, id)
        current_env.set(self.env)
        self._bind(main)
        current_main.set(lambda: self.main)
        for wf in self.config.workflows:
            setattr(self.env, wf.binding, self.engine.binding(wf.name))
        await self.engine.start()
        for loader in self.loaders.values():
            loader.warm()

    async def stop(self) -> None:
        await self.engine.stop()
        for loader in self.loaders.values():
            await loader.close()

    async def __aenter__(self) -> Project:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def fetch(self, request: Request) -> Response:
        """Hand an HTTP request to the dispatcher's ``Default.fetch``."""
        assert self.main is not None
        token = current_env.set(self.env)
        main_token = current_main.set(lambda: self.main)
        try:
            cls = getattr(self.main, "Default", None)
            if cls is None:
                return Response("the dispatcher defines no Default(WorkerEntrypoint)", status=500)
            ctx = ExecutionContext(exports=self.exports)
            return await cls(ctx, self.env).fetch(request)  # type: ignore[no-any-return]
        finally:
            current_main.reset(main_token)
            current_env.reset(token)
