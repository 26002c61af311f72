"""How a failed step's error reaches a tenant's ``run()`` on Cloudflare.

Cloudflare's Python SDK (workerd ``src/pyodide/internal/workers-api``, ``_from_js_error``)
rebuilds only ``TypeError``, ``ValueError`` and ``NonRetryableError`` from the JS error
a failed ``step.do`` rejects with; every other class (``KeyError``, a custom one, a
timeout) arrives as ``pyodide.ffi.JsException``, whose ``name`` is the original name.
"""

from __future__ import annotations

from typing import Any

from dynwf.compat.pyodide_ffi import JsException
from dynwf.workers.workflows import NonRetryableError

_REBUILT: dict[str, type[Exception]] = {
    "TypeError": TypeError,
    "ValueError": ValueError,
    "NonRetryableError": NonRetryableError,
}


def error_as_on_cloudflare(error: Any) -> Exception:
    """The exception ``run()`` sees for a journaled step error ``{"name", "message"}``."""
    name, message = str(error.get("name", "Error")), str(error.get("message", ""))
    cls = _REBUILT.get(name)
    if cls is not None:
        return cls(message)
    return JsException(name, message)
