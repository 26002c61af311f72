"""The DuckDB journal: one append-only fact table. All of dynwf's SQL lives in this module.

Schema::

    CREATE TABLE journal (
        uid   VARCHAR NOT NULL,   -- engine-internal instance key (survives restart())
        seq   BIGINT  NOT NULL,   -- global order of facts; buffered events use it as id
        ts    BIGINT  NOT NULL,   -- engine clock, ms since the epoch
        kind  VARCHAR NOT NULL,   -- created | status | attempt | attempt_end | sleep | ...
        step  VARCHAR,            -- step key, e.g. 'do:charge#1', 'sleep:cool:600000#1'
        data  VARCHAR NOT NULL    -- JSON object, see dynwf.engine._model for each kind
    );
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);  -- schema version

Why append-only: a commit costs ~0.8 ms on this class of machine whatever it
holds, so every commit is exactly one INSERT statement (no UPDATE, no explicit
transaction); the current state of an instance is the fold of its facts.
"""

from __future__ import annotations

import functools
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from dynwf.errors import JournalError

SCHEMA_VERSION = "1"
# "process": a commit is in the OS page cache before the engine goes on, so it
#   survives any kill of the process (what dynwf's crash injection does) but not
#   an OS crash or power loss; like SQLite's synchronous=NORMAL. About 0.55 ms.
# "machine": fsync on every commit; survives an OS crash too. About 0.9 ms.
Durability = Literal["process", "machine"]
Row = tuple[str, int, int, str, str | None, str]
FINISHED = ("complete", "errored", "terminated")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    uid VARCHAR NOT NULL, seq BIGINT NOT NULL, ts BIGINT NOT NULL,
    kind VARCHAR NOT NULL, step VARCHAR, data VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""
_VALUES_UP_TO = 16


@functools.cache
def _values_sql(n: int) -> str:
    return "INSERT INTO journal VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)


_INSERT_MANY = (
    "INSERT INTO journal SELECT unnest($1::VARCHAR[]), unnest($2::BIGINT[]), "
    "unnest($3::BIGINT[]), unnest($4::VARCHAR[]), unnest($5::VARCHAR[]), unnest($6::VARCHAR[])"
)
# Latest status fact per instance, with the creation fact's identity fields.
_SUMMARY = """
WITH c AS (
    SELECT uid, ts AS created, data->>'workflow' AS workflow, data->>'scope' AS scope,
           data->>'id' AS id
    FROM journal WHERE kind = 'created'
      AND uid NOT IN (SELECT uid FROM journal WHERE kind = 'deleted')
), s AS (
    SELECT uid, arg_max(data->>'status', seq) AS status, max(seq) AS sseq
    FROM journal WHERE kind = 'status' GROUP BY uid
), r AS (
    SELECT uid, max(seq) AS rseq FROM journal WHERE kind = 'restart' GROUP BY uid
), n AS (
    SELECT j.uid, count(DISTINCT j.step) AS steps
    FROM journal j LEFT JOIN r USING (uid)
    WHERE j.step IS NOT NULL AND j.seq > coalesce(r.rseq, -1) GROUP BY j.uid
)
SELECT c.uid, c.workflow, c.scope, c.id, coalesce(s.status, 'queued') AS status,
       c.created, coalesce(n.steps, 0) AS steps
FROM c LEFT JOIN s USING (uid) LEFT JOIN n USING (uid)
"""


@dataclass(frozen=True, slots=True)
class InstanceRow:
    """One line of an instance listing, straight from the journal."""

    uid: str
    workflow: str
    scope: str
    id: str
    status: str
    created: int
    steps: int


class Journal:
    """The one DuckDB connection of an engine (or a read-only reader)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        read_only: bool = False,
        durability: Durability = "process",
    ) -> None:
        if durability not in ("process", "machine"):
            raise JournalError(f"durability {durability!r} must be 'process' or 'machine'")
        self.path = Path(path) if path is not None else None
        target = str(self.path) if self.path is not None else ":memory:"
        if self.path is not None and not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if read_only and self.path is not None and not self.path.exists():
            raise JournalError(
                f"no journal at {self.path}: run the workflow first (dynwf dev / dynwf run)"
            )
        try:
            self._db = duckdb.connect(
                target,
                read_only=read_only,
                # One thread and a large checkpoint threshold measurably cut the
                # cost of the small commits the engine makes (see bench/).
                config={
                    "threads": 1,
                    "checkpoint_threshold": "256MB",
                    "fsync_mode": "STANDARD" if durability == "machine" else "NONE",
                },
            )
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise JournalError(
                    f"the journal {target} is in use by another dynwf process "
                    "(a running `dynwf dev`?): talk to it through its API, or stop it first"
                ) from exc
            raise JournalError(f"cannot open the journal {target}: {exc}") from exc
        except duckdb.Error as exc:
            raise JournalError(f"cannot open the journal {target}: {exc}") from exc
        if not read_only:
            self._db.execute(_SCHEMA)
            self._db.execute(
                "INSERT INTO meta VALUES ('schema', ?) ON CONFLICT DO NOTHING", [SCHEMA_VERSION]
            )
        self._check_schema()
        self.commits = 0

    def _check_schema(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except duckdb.CatalogException as exc:
            raise JournalError(f"{self.path} is not a dynwf journal (no meta table)") from exc
        if row is None or row[0] != SCHEMA_VERSION:
            found = row[0] if row else "none"
            raise JournalError(
                f"{self.path} has journal schema {found}, this dynwf reads {SCHEMA_VERSION}: "
                "use the dynwf version that wrote it, or start a fresh --persist-to directory"
            )

    def close(self) -> None:
        self._db.close()

    def next_seq(self) -> int:
        row = self._db.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()
        return int(row[0]) + 1 if row else 1

    def append(self, rows: Sequence[Row]) -> None:
        """Commit ``rows`` durably in one statement (one transaction)."""
        if not rows:
            return
        if len(rows) <= _VALUES_UP_TO:
            # Few rows: a VALUES list binds fastest; many: unnest() scales better.
            self._db.execute(_values_sql(len(rows)), [v for row in rows for v in row])
        else:
            cols: list[list[Any]] = [[], [], [], [], [], []]
            for row in rows:
                for col, value in zip(cols, row, strict=True):
                    col.append(value)
            self._db.execute(_INSERT_MANY, cols)
        self.commits += 1

    def _rows(self, where: str, params: Sequence[Any]) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = defaultdict(list)
        cur = self._db.execute(
            f"SELECT uid, seq, ts, kind, step, data FROM journal WHERE {where} ORDER BY seq", params
        )
        while batch := cur.fetchmany(50_000):
            for row in batch:
                out[row[0]].append(row)
        return out

    def facts(self, uids: Iterable[str]) -> dict[str, list[Row]]:
        """Every fact of these instances, in order."""
        ids = list(uids)
        return self._rows("uid IN (SELECT unnest($1::VARCHAR[]))", [ids]) if ids else {}

    def unfinished_facts(self) -> dict[str, list[Row]]:
        """Every fact of every instance whose latest status is not finished."""
        return self._rows(
            "(uid IN (SELECT uid FROM (SELECT uid, arg_max(data->>'status', seq) AS st "
            "FROM journal WHERE kind = 'status' GROUP BY uid) WHERE st NOT IN (?, ?, ?)) "
            "OR uid NOT IN (SELECT uid FROM journal WHERE kind = 'status')) "
            "AND uid NOT IN (SELECT uid FROM journal WHERE kind = 'deleted')",
            FINISHED,
        )

    def instances(
        self,
        *,
        workflow: str | None = None,
        scope: str | tuple[str, ...] | None = None,
        id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[InstanceRow]:
        """Instances, newest first, filtered."""
        conds: list[str] = []
        params: list[str] = []
        for col, value in (
            ("workflow", workflow),
            ("scope", scope),
            ("id", id),
            ("status", status),
        ):
            if isinstance(value, tuple):  # any of these
                conds.append(f"{col} IN ({', '.join('?' * len(value))})")
                params.extend(value)
            elif value is not None:
                conds.append(f"{col} = ?")
                params.append(value)
        sql = f"SELECT * FROM ({_SUMMARY})"
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY created DESC, uid"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
        return [InstanceRow(*r) for r in self._db.execute(sql, params).fetchall()]

    def status_counts(self, workflow: str) -> dict[str, int]:
        rows = self._db.execute(
            f"SELECT status, count(*) FROM ({_SUMMARY}) WHERE workflow = ? GROUP BY status",
            [workflow],
        ).fetchall()
        return {str(s): int(n) for s, n in rows}

    def workflows(self) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT data->>'workflow' FROM journal WHERE kind = 'created' ORDER BY 1"
        ).fetchall()
        return [str(r[0]) for r in rows]


def encode(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
