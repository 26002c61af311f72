"""Where a project's state is read from: the running ``dynwf dev`` if there is one, else the journal.

A running ``dynwf dev`` holds the journal open for writing, which locks every other
process out of it, and announces itself in ``<state>/dev.json`` =
``{"pid": int, "url": str}`` (removed on exit). ``dynwf.server.find_running``
decides whether that file names a live server (the pid exists and the API answers
within a second); a stale file is ignored.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from dynwf.client._http import HttpStateClient
from dynwf.client._journal import JournalStateClient
from dynwf.client._model import StateClient
from dynwf.server import find_running

STATE_DIR = ".dynwf"
JOURNAL_FILE = "journal.duckdb"
PERSIST_ENV = "DYNWF_PERSIST_TO"


async def open_state(state_dir: str | Path) -> StateClient:
    """A client for the state in ``state_dir``: through ``dynwf dev`` when it runs, else the journal."""
    state_dir = Path(state_dir)
    url = await asyncio.to_thread(find_running, state_dir)
    if url is not None:
        return HttpStateClient(url)
    return JournalStateClient(state_dir / JOURNAL_FILE)
