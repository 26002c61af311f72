"""The dev server: HTTP to the dispatcher and the explorer REST API."""

from dynwf.server._app import Fetch, create_app
from dynwf.server._dev import serve_project
from dynwf.server._serve import ServerError, find_running, serve

__all__ = ["Fetch", "ServerError", "create_app", "find_running", "serve", "serve_project"]
