"""Make ``import workers`` (and ``workers.workflows``) resolve to ``dynwf.workers``.

Cloudflare's ``workers-runtime-sdk`` also ships a top-level ``workers`` module (for
type hints, with no runtime). A finder placed first on ``sys.meta_path`` wins over
it, and any copy of it already imported is replaced.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

_TARGETS = {"workers": "dynwf.workers", "workers.workflows": "dynwf.workers.workflows"}


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
    if not installed():
        sys.meta_path.insert(0, _AliasFinder())
    for alias, real in _TARGETS.items():
        module = sys.modules.get(alias)
        if module is None or module.__name__ != real:
            sys.modules[alias] = importlib.import_module(real)
