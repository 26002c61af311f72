"""Loaded by every Python process that bench/timeline.py starts (via PYTHONPATH).

With DYNWF_TIMELINE=<dir> set it wraps the message stream's read and write callbacks
(and, in the engine process, the journal commit) to record CLOCK_MONOTONIC timestamps,
which one clock serves for every process on Linux. An isolate writes its record to
<dir>/isolate-<pid>.json whenever a run pass closes its step object; the engine's stays
in memory for timeline.py to read.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

RECORD: list[tuple[str, int]] = []


def install() -> None:
    from dynwf.dispatch import _wire

    conn = _wire.Connection
    read, flush = conn.data_received, conn._flush

    def data_received(self: Any, data: bytes) -> None:
        RECORD.append(("read", time.monotonic_ns()))
        read(self, data)

    def _flush(self: Any) -> None:
        if self._out:
            RECORD.append(("write", time.monotonic_ns()))
        flush(self)

    conn.data_received, conn._flush = data_received, _flush  # type: ignore[method-assign]
    if os.environ.get("DYNWF_ISOLATE_FD"):
        from dynwf.engine import _step

        close = _step.Step.close

        def dump(self: Any) -> None:
            path = os.path.join(os.environ["DYNWF_TIMELINE"], f"isolate-{os.getpid()}.json")
            with open(path, "w") as f:
                json.dump(RECORD, f)
            close(self)

        _step.Step.close = dump  # type: ignore[method-assign]
    else:
        from dynwf.journal import _journal

        append = _journal.Journal.append

        def commit(self: Any, rows: Any) -> Any:
            RECORD.append(("commit", time.monotonic_ns()))
            try:
                return append(self, rows)
            finally:
                RECORD.append(("committed", time.monotonic_ns()))

        _journal.Journal.append = commit  # type: ignore[method-assign]


if os.environ.get("DYNWF_TIMELINE"):
    install()
