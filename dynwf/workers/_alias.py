"""Make ``import workers`` (and ``workers.workflows``) resolve to ``dynwf.workers``, and
``js``, ``pyodide.ffi`` and ``dynamic_workflows`` to dynwf's stand-ins (``dynwf.compat``).

Cloudflare's ``workers-runtime-sdk`` also ships a top-level ``workers`` module, and a
dispatcher may vendor the real ``dynamic_workflows`` next to its main module: both
need Pyodide's JS bridge, which CPython lacks. A finder placed first on
``sys.meta_path`` wins over them, and a copy of ``workers`` already imported is
replaced. Under Pyodide itself (``sys.platform == "emscripten"``) nothing is routed:
the real modules are there.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# Imported at once (a real ``workers`` may be imported already and must be replaced).
_EAGER = {"workers": "dynwf.workers", "workers.workflows": "dynwf.workers.workflows"}
# Imported when someone imports them (an isolate should not load the dispatcher side).
_LAZY = {
    "js": "dynwf.compat.js",
    "pyodide": "dynwf.compat.pyodide",
    "pyodide.ffi": "dynwf.compat.pyodide_ffi",
    "dynamic_workflows": "dynwf.compat.dynamic_workflows",
}
_TARGETS = {**_EAGER, **_LAZY}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self._target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self._target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        real = _TARGETS.get(fullname)
        if real is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real), is_package=True)


def installed() -> bool:
    return any(isinstance(f, _AliasFinder) for f in sys.meta_path)


def install() -> None:
    """Idempotently route ``workers`` imports to dynwf (safe to call often)."""
    if sys.platform == "emscripten":
        return  # Cloudflare's runtime: the real modules are there
    if not installed():
        sys.meta_path.insert(0, _AliasFinder())
    for alias, real in _LAZY.items():
        module = sys.modules.get(alias)
        if module is not None and module.__name__ != real:
            sys.modules[alias] = importlib.import_module(real)
    for alias, real in _EAGER.items():
        module = sys.modules.get(alias)
        if module is None or module.__name__ != real:
            sys.modules[alias] = importlib.import_module(real)
