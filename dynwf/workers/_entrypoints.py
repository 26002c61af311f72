"""Base classes tenant code subclasses: the workflow and the HTTP entry point."""

from __future__ import annotations

from typing import Any


class _Entrypoint:
    """Holds ``self.ctx`` and ``self.env`` as Cloudflare's entrypoints do."""

    def __init__(self, ctx: Any = None, env: Any = None) -> None:
        self.ctx = ctx
        self.env = env


class WorkflowEntrypoint(_Entrypoint):
    """Subclass and define ``async def run(self, event, step)``.

    A fresh object is made for every run pass: state kept on ``self`` does not
    survive hibernation, exactly as on Cloudflare.
    """

    async def run(self, event: Any, step: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} must define 'async def run(self, event, step)'"
        )


class WorkerEntrypoint(_Entrypoint):
    """Subclass and define ``async def fetch(self, request)`` for HTTP."""
