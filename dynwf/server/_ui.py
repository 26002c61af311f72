"""The explorer UI at ``/cdn-cgi/explorer/``: static pages that read the explorer API.

Plain HTML, CSS and JavaScript shipped inside the package (``explorer_ui/``), so
there is no build step and nothing is fetched from the internet: the
Content-Security-Policy allows this origin only. Pages:

    /cdn-cgi/explorer/                                        instances, filtered
    /cdn-cgi/explorer/workflows/<wf>/instances/<id>?tenant=T  one instance

An instance id is unique only within its workflow and tenant, so the instance page
takes the tenant scope in ``?tenant=`` (the explorer API's own parameter); without
it the API finds the id when one tenant has it. The server answers the same page
for every instance path; the page's script reads its own URL.
"""

from __future__ import annotations

from importlib import resources

from starlette.responses import Response

UI_PREFIX = "/cdn-cgi/explorer"
_FILES = resources.files("dynwf.server") / "explorer_ui"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # A newer dynwf serves newer files at the same paths.
    "cache-control": "no-cache",
}


def _file(name: str) -> Response | None:
    if "/" in name or name.startswith(".") or "." not in name:
        return None
    kind = _TYPES.get(name[name.rfind(".") :])
    node = _FILES / name
    if kind is None or not node.is_file():
        return None
    return Response(node.read_bytes(), headers={"content-type": kind, **_HEADERS})


def ui_response(method: str, sub: str) -> Response | None:
    """The answer for ``UI_PREFIX + sub`` (not the API), or None for the caller's 404."""
    if method not in ("GET", "HEAD"):
        return None
    if sub == "":
        return Response(status_code=308, headers={"location": UI_PREFIX + "/"})
    parts = sub.split("/")[1:]
    if parts == [""]:
        return _file("index.html")
    if len(parts) == 2 and parts[0] == "assets":
        return _file(parts[1])
    if len(parts) == 4 and parts[0] == "workflows" and parts[2] == "instances" and all(parts):
        return _file("instance.html")
    return None
