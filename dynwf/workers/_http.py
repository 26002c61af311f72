"""``Request`` and ``Response`` as Cloudflare's Python Workers shape them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def _header_items(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> dict[str, str]:
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {str(k).lower(): str(v) for k, v in items}


class Request:
    """An incoming HTTP request: ``method``, ``url``, ``headers``, ``await text()/json()``."""

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: bytes | str | None = None,
    ) -> None:
        self.url = url
        self.method = method.upper()
        self.headers = _header_items(headers)
        self._body = body.encode() if isinstance(body, str) else (body or b"")

    @property
    def js_object(self) -> JsRequest:
        """The request as JS sees it: what ``stub.getEntrypoint().fetch(...)`` takes."""
        return JsRequest(self)

    _js_request = js_object

    async def bytes(self) -> bytes:
        return self._body

    async def text(self) -> str:
        return self._body.decode("utf-8")

    async def json(self) -> Any:
        return json.loads(self._body or b"null")


class JsRequest:
    """``request.js_object``: the JS Request behind a Python ``Request``."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request

    @property
    def url(self) -> str:
        return self.request.url

    @property
    def method(self) -> str:
        return self.request.method


class _JsonMethod:
    """``Response.json``: the static constructor on the class, the body reader on an
    instance, as Cloudflare's ``Response`` (a ``FetchResponse``) has both."""

    def __get__(self, obj: Response | None, cls: type[Response]) -> Any:
        return cls.from_json if obj is None else obj.json_body


class Response:
    """An HTTP response: ``Response(body, status=, headers=)`` or ``Response.json(data)``."""

    def __init__(
        self,
        body: str | bytes | None = None,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        *,
        status_text: str = "",
    ) -> None:
        self.body = body.encode() if isinstance(body, str) else (body or b"")
        self.status = int(status)
        self.status_text = status_text
        self.headers = _header_items(headers)
        if isinstance(body, str):
            self.headers.setdefault("content-type", "text/plain;charset=UTF-8")

    json = _JsonMethod()
    """``Response.json(data, status=, headers=)`` makes a JSON response (on the class);
    ``await response.json()`` reads one (on an instance, e.g. what ``fetch`` returned)."""

    @classmethod
    def from_json(
        cls,
        data: Any,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Response:
        merged = {"content-type": "application/json", **_header_items(headers)}
        return cls(json.dumps(data).encode(), status=status, headers=merged)

    @property
    def ok(self) -> bool:
        return 200 <= self.status <= 299

    async def bytes(self) -> bytes:
        return self.body

    async def text(self) -> str:
        return self.body.decode("utf-8")

    async def json_body(self) -> Any:
        return json.loads(self.body or b"null")
