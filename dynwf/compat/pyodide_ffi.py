"""``from pyodide.ffi import to_js, create_proxy``: Pyodide's JS bridge as dynwf needs it.

``to_js(value, dict_converter=Object.fromEntries)`` gives a ``JsObject`` (without a
``dict_converter`` a dict becomes a ``Map``, as in Pyodide); ``create_proxy(fn)`` gives
a callable proxy, which is what the Worker Loader expects as its ``get`` callback.
``JsException`` is what a step error Cloudflare does not rebuild reaches ``run()`` as.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dynwf.compat._jsobject import JsMap, JsObject, convert


def to_js(
    obj: Any,
    *,
    depth: int = -1,
    dict_converter: Callable[[Any], Any] | None = None,
    default_converter: Callable[..., Any] | None = None,
    create_pyproxies: bool = True,
    pyproxies: Any = None,
    eager_converter: Any = None,
) -> Any:
    """``obj`` converted the way Pyodide's ``to_js`` converts it (dicts, lists, scalars)."""
    return convert(obj, dict_converter)


class _JsNull:
    """``jsnull``: JS ``null`` (``to_js`` turns ``None`` into ``undefined``, not null)."""

    _instance: _JsNull | None = None

    def __new__(cls) -> _JsNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "jsnull"

    def __bool__(self) -> bool:
        return False


jsnull = _JsNull()


class JsProxy:
    """Base of the JS values Python holds (``JsObject`` and proxies are not subclasses)."""


class JsDoubleProxy:
    """``create_proxy(fn)``: a Python callable handed to JS. It may be called many times."""

    def __init__(self, obj: Callable[..., Any]) -> None:
        if not callable(obj):
            raise TypeError(f"create_proxy needs a callable here, got {type(obj).__name__}")
        self._obj: Callable[..., Any] | None = obj

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._obj is None:
            raise RuntimeError("This borrowed proxy was automatically destroyed")
        return self._obj(*args, **kwargs)

    def unwrap(self) -> Callable[..., Any]:
        if self._obj is None:
            raise RuntimeError("This borrowed proxy was automatically destroyed")
        return self._obj

    def destroy(self) -> None:
        self._obj = None


def create_proxy(
    obj: Callable[..., Any], *, capture_this: bool = False, roundtrip: bool = True
) -> JsDoubleProxy:
    return JsDoubleProxy(obj)


def destroy_proxies(proxies: Any) -> None:
    for proxy in proxies or []:
        proxy.destroy()


class JsException(Exception):
    """A JS error seen from Python: ``name`` is the JS error's name, ``message`` its text.

    A step error whose class Cloudflare's SDK does not rebuild (anything but
    ``TypeError``, ``ValueError`` and ``NonRetryableError``) reaches ``run()`` as one.
    """

    def __init__(self, name: str, message: str = "") -> None:
        super().__init__(message)
        self.name, self.message = name, message

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


__all__ = [
    "JsDoubleProxy",
    "JsException",
    "JsMap",
    "JsObject",
    "JsProxy",
    "create_proxy",
    "destroy_proxies",
    "jsnull",
    "to_js",
]
