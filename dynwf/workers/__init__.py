"""The tenant-facing ``workers`` API: what ``from workers import ...`` gives code dynwf runs.

Names and shapes match Cloudflare's Python Workers SDK, so tenant code runs
unchanged there. ``install()`` makes ``import workers`` resolve here even when
Cloudflare's ``workers-runtime-sdk`` is installed too (it needs Pyodide's JS bridge),
and ``js``, ``pyodide.ffi`` and ``dynamic_workflows`` resolve to ``dynwf.compat``.
"""

from __future__ import annotations

from dynwf.workers._alias import install, installed
from dynwf.workers._entrypoints import WorkerEntrypoint, WorkflowEntrypoint
from dynwf.workers._fetch import fetch
from dynwf.workers._http import Request, Response
from dynwf.workers._rpc import python_from_rpc, python_to_rpc

__all__ = [
    "Request",
    "Response",
    "WorkerEntrypoint",
    "WorkflowEntrypoint",
    "fetch",
    "install",
    "installed",
    "python_from_rpc",
    "python_to_rpc",
]
