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

Beside it:

- ``journal.duckdb.tail`` (``FactTail``): the facts committed since they were last
  loaded into DuckDB. A commit is one ``write`` of one line to this file (a few
  microseconds; an ``fdatasync`` too for ``durability="machine"``): an INSERT into
  DuckDB costs ~0.6 ms whatever it holds, more than a whole isolated step. The
  writer loads the tail into DuckDB in batches (``load()``: every ``LOAD_ROWS`` facts,
  before every query, at close, and when its engine asks, ~50 ms after a commit) and
  then empties it. Opening the journal loads a tail a killed writer left.
- ``journal.duckdb.open`` (``WriterMark``) says a writer has it open and the last
  fact it committed, so a journal that lost its ``.wal`` or its tail is not taken
  for a shorter one.

Why append-only: the current state of an instance is the fold of its facts, and
facts in batches load with one INSERT statement (no UPDATE, no explicit transaction).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb

from dynwf.errors import JournalDataLossError, JournalError, JournalInUseError

log = logging.getLogger("dynwf.journal")

SCHEMA_VERSION = "1"
# "process": a commit is in the OS page cache before the engine goes on, so it
#   survives any kill of the process (what dynwf's crash injection does) but not
#   an OS crash or power loss; like SQLite's synchronous=NORMAL.
# "machine": fdatasync on every commit; survives an OS crash too.
Durability = Literal["process", "machine"]
Row = tuple[str, int, int, str, str | None, str]  # uid, seq, ts, kind, step, data json

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    uid VARCHAR NOT NULL, seq BIGINT NOT NULL, ts BIGINT NOT NULL,
    kind VARCHAR NOT NULL, step VARCHAR, data VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""
_VALUES_UP_TO = 16
# Committed facts waiting in the tail are loaded into DuckDB once there are this many.
LOAD_ROWS = 2048


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
    """The one DuckDB connection of an engine (or a read-only reader).

    A writer keeps ``<journal>.open`` (see ``WriterMark``) while it has the file
    open; it is removed at a clean close. Every DuckDB error becomes a one-line
    ``JournalError`` naming the file, the cause and what to do.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        *,
        read_only: bool = False,
        durability: Durability = "process",
        accept_data_loss: bool = False,
    ) -> None:
        if durability not in ("process", "machine"):
            raise JournalError(f"durability {durability!r} must be 'process' or 'machine'")
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        self.commits = 0
        self.failed = False  # a commit failed: the file is not closed as clean
        self._mark: WriterMark | None = None
        self._tail: FactTail | None = None
        # Committed (in the tail) but not yet loaded into DuckDB: ``load()``.
        self._pending: list[Row] = []
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
        except duckdb.Error as exc:
            raise self._open_error(exc) from exc
        try:
            # Before anything is written: a journal missing data is refused unchanged.
            have, tail = (
                self._check_complete(accept_data_loss) if self.path is not None else (0, [])
            )
            if not read_only:
                try:
                    self._db.execute(_SCHEMA)
                    self._db.execute(
                        "INSERT INTO meta VALUES ('schema', ?) ON CONFLICT DO NOTHING",
                        [SCHEMA_VERSION],
                    )
                except duckdb.Error as exc:
                    raise self._damaged(exc, "cannot open") from exc
            self._check_schema()
            if self.path is not None and not read_only:
                self._mark = WriterMark(self.path)
                self._mark.open(have, sync=durability == "machine")
                self._pending = tail  # what a killed writer committed: loaded now
                self._tail = FactTail(self.path)
                self._tail.open(sync=durability == "machine")
                self.load()
                self._tail.empty()  # also of lines DuckDB had already, or dropped ones
            elif tail:
                # A reader cannot write the file: it sees the tail through a temporary
                # table that shadows the journal for this connection.
                try:
                    self._db.execute("CREATE TEMP TABLE journal AS SELECT * FROM journal")
                    self._insert(tail)
                except duckdb.Error as exc:
                    raise self._damaged(exc, "cannot read") from exc
        except BaseException:
            if self._tail is not None:
                self._tail.close(clean=False)
            self._db.close()
            raise

    def _open_error(self, exc: duckdb.Error) -> JournalError:
        text = str(exc)
        if "Could not set lock" in text or "Conflicting lock" in text:
            found = _LOCK_PID.search(text)
            pid = int(found.group(1)) if found else None
            return JournalInUseError(
                f"the journal {self.path} is in use by PID {pid if pid is not None else '?'}"
                f"{_command_of(pid)}: stop that process first (a `dynwf dev` can be stopped "
                "with Ctrl-C), or give this one its own state with --persist-to DIR",
                pid,
            )
        return self._damaged(exc, "cannot open")

    def _damaged(self, exc: BaseException, doing: str) -> JournalError:
        cause = " ".join(str(exc).split())
        return JournalError(
            f"{doing} the journal {self.path}: it is damaged or not a DuckDB file ({cause}): "
            f"move {self.path} (and any {_name(self.path, '.wal')} and "
            f"{_name(self.path, FactTail.SUFFIX)}) aside to keep it, then "
            "start with a fresh state directory, or restore it from a backup"
        )

    def _check_schema(self) -> None:
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except duckdb.CatalogException as exc:
            raise JournalError(f"{self.path} is not a dynwf journal (no meta table)") from exc
        except duckdb.Error as exc:
            raise self._damaged(exc, "cannot read") from exc
        if row is None or row[0] != SCHEMA_VERSION:
            found = row[0] if row else "none"
            raise JournalError(
                f"{self.path} has journal schema {found}, this dynwf reads {SCHEMA_VERSION}: "
                "use the dynwf version that wrote it, or start a fresh --persist-to directory"
            )

    def _check_complete(self, accept_data_loss: bool) -> tuple[int, list[Row]]:
        """Refuse a journal that lacks facts its last writer committed (see ``WriterMark``);
        returns the seq of the last fact it holds and the tail's facts DuckDB lacks."""
        assert self.path is not None
        last = WriterMark(self.path).read()
        loaded = self.next_seq() - 1
        tail = [row for row in FactTail(self.path).read() if row[1] > loaded]
        have = tail[-1][1] if tail else loaded
        if tail and tail[0][1] > loaded + 1:
            # The tail starts after a gap: the facts between were loaded into a DuckDB
            # file that lost them since (its .wal).
            self._refuse_loss(last, tail[0][1] - 1, loaded, accept_data_loss)
            return loaded, []  # later facts of instances whose earlier ones are lost: dropped
        if last is not None and last.seq > have:
            self._refuse_loss(last, last.seq, have, accept_data_loss)
        return have, tail

    def _refuse_loss(
        self, last: Mark | None, committed: int, have: int, accept_data_loss: bool
    ) -> None:
        """Facts ``have + 1 .. committed`` were committed and are gone: refuse, or (accepted)
        warn once."""
        assert self.path is not None
        pid = last.pid if last is not None else "?"
        if not accept_data_loss:
            wal = _name(self.path, ".wal")
            how = (
                "start `dynwf dev --accept-data-loss` (or `dynwf run --accept-data-loss`) "
                "to open it without them"
                if self.read_only
                else "pass --accept-data-loss to open it without them"
            )
            raise JournalDataLossError(
                f"the journal {self.path} is missing data: its last writer (PID {pid}) "
                f"committed facts up to #{committed} and stopped without closing it, but the "
                f"journal holds facts only up to #{have} ({wal} or "
                f"{_name(self.path, FactTail.SUFFIX)} was lost or replaced?): "
                f"restore them if you have them, or {how}"
            )
        if not self.read_only:
            log.warning(
                "opening %s without facts #%d..#%d and any after them (--accept-data-loss)",
                self.path,
                have + 1,
                committed,
            )

    def close(self) -> None:
        """Load the tail and close the file; a writer that committed everything clears its
        ``.open`` mark and its tail. After a failed commit the tail stays, for the next
        open to load."""
        try:
            if not self.failed:
                self.load()
            self._db.close()
        except duckdb.Error as exc:
            self.failed = True
            raise self._damaged(exc, "cannot close") from exc
        finally:
            if self._tail is not None:
                self._tail.close(clean=not self.failed)
                self._tail = None
            if self._mark is not None:
                self._mark.close(clean=not self.failed)
                self._mark = None

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every row of a query; a DuckDB error (a damaged file) becomes a JournalError."""
        self.load()
        try:
            cur = self._db.execute(sql, params)
            out: list[Any] = []
            while batch := cur.fetchmany(50_000):
                out.extend(batch)
            return out
        except duckdb.Error as exc:
            raise self._damaged(exc, "cannot read") from exc

    def next_seq(self) -> int:
        self.load()
        try:
            rows = self._db.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchall()
        except duckdb.CatalogException:
            return 1  # no journal table: a file whose every fact was lost (or not ours)
        except duckdb.Error as exc:
            raise self._damaged(exc, "cannot read") from exc
        return int(rows[0][0]) + 1 if rows else 1

    def append(self, rows: Sequence[Row]) -> None:
        """Commit ``rows`` durably, all or none: one line written to the tail.

        They are loaded into DuckDB later (``load()``); every query of this journal
        sees them at once. Raises ``JournalError`` if the commit fails; the journal is
        then ``failed`` and its writer must stop (see ``Engine``): what the tail and
        DuckDB kept is all there is.
        """
        if not rows:
            return
        if self.failed:
            raise JournalError(f"the journal {self.path} failed before: nothing more is committed")
        if self._tail is not None:
            try:
                self._tail.write(rows)
            except OSError as exc:
                self.failed = True
                raise JournalError(
                    f"a commit to the journal {self.path} failed: writing "
                    f"{self._tail.path}: {exc.strerror or exc}"
                ) from exc
        self._pending.extend(rows)
        self.commits += 1
        if self._mark is not None:
            self._mark.committed(max(row[1] for row in rows))
        if len(self._pending) >= LOAD_ROWS:
            self.load()

    @property
    def unloaded(self) -> int:
        """Committed facts not yet loaded into DuckDB (see ``load``)."""
        return len(self._pending)

    def load(self) -> None:
        """Load the committed facts of the tail into DuckDB (one INSERT), then empty it.

        Raises ``JournalError`` if DuckDB refuses them; the journal is then ``failed``
        (its writer must stop) and the facts stay in the tail for the next open.
        """
        if not self._pending or self.failed:
            return
        try:
            self._insert(self._pending)
        except duckdb.Error as exc:
            self.failed = True
            cause = " ".join(str(exc).split())
            raise JournalError(
                f"a commit to the journal {self.path} failed: loading committed facts into "
                f"DuckDB: {cause} (they are kept in "
                f"{_name(self.path, FactTail.SUFFIX)} for the next start)"
            ) from exc
        self._pending = []
        if self._tail is not None:
            self._tail.empty()

    def _insert(self, rows: Sequence[Row]) -> None:
        if len(rows) <= _VALUES_UP_TO:
            # Few rows: a VALUES list binds fastest; many: unnest() scales better.
            self._db.execute(_values_sql(len(rows)), [v for row in rows for v in row])
        else:
            cols: list[list[Any]] = [[], [], [], [], [], []]
            for row in rows:
                for col, value in zip(cols, row, strict=True):
                    col.append(value)
            self._db.execute(_INSERT_MANY, cols)

    def _rows(self, where: str, params: Sequence[Any]) -> dict[str, list[Row]]:
        out: dict[str, list[Row]] = defaultdict(list)
        sql = f"SELECT uid, seq, ts, kind, step, data FROM journal WHERE {where} ORDER BY seq"
        for row in self._read(sql, params):
            out[row[0]].append(row)
        return out

    def facts(self, uids: Iterable[str]) -> dict[str, list[Row]]:
        """Every fact of these instances, in order."""
        ids = list(uids)
        return self._rows("uid IN (SELECT unnest($1::VARCHAR[]))", [ids]) if ids else {}

    def unfinished_facts(self, finished: Sequence[str]) -> dict[str, list[Row]]:
        """Every fact of every instance whose latest status is not one of ``finished``."""
        return self._rows(
            "(uid IN (SELECT uid FROM (SELECT uid, arg_max(data->>'status', seq) AS st "
            "FROM journal WHERE kind = 'status' GROUP BY uid) "
            "WHERE NOT list_contains($1::VARCHAR[], st)) "
            "OR uid NOT IN (SELECT uid FROM journal WHERE kind = 'status')) "
            "AND uid NOT IN (SELECT uid FROM journal WHERE kind = 'deleted')",
            [list(finished)],
        )

    def retained(self, finished: Sequence[str]) -> list[str]:
        """Every instance, not deleted, created with a retention whose latest status is one
        of ``finished``: those that may expire."""
        rows = self._read(
            "WITH s AS (SELECT uid, arg_max(data->>'status', seq) AS st FROM journal "
            "WHERE kind = 'status' GROUP BY uid) "
            "SELECT c.uid FROM journal c JOIN s USING (uid) "
            "WHERE c.kind = 'created' AND (c.data->'retention') IS NOT NULL "
            "AND list_contains($1::VARCHAR[], s.st) "
            "AND c.uid NOT IN (SELECT uid FROM journal WHERE kind = 'deleted')",
            [list(finished)],
        )
        return [str(r[0]) for r in rows]

    def compact(self, uids: Sequence[str]) -> None:
        """Remove every fact of these instances but their ``deleted`` tombstone (expired
        instances: their tombstone holds the journal's newest seq for ``WriterMark``)."""
        if not uids:
            return
        self.load()
        try:
            self._db.execute(
                "DELETE FROM journal WHERE uid IN (SELECT unnest($1::VARCHAR[])) "
                "AND kind <> 'deleted'",
                [list(uids)],
            )
        except duckdb.Error as exc:
            raise self._damaged(exc, "cannot compact") from exc

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
        return [InstanceRow(*r) for r in self._read(sql, params)]

    def status_counts(self, workflow: str) -> dict[str, int]:
        rows = self._read(
            f"SELECT status, count(*) FROM ({_SUMMARY}) WHERE workflow = ? GROUP BY status",
            [workflow],
        )
        return {str(s): int(n) for s, n in rows}

    def workflows(self) -> list[str]:
        rows = self._read(
            "SELECT DISTINCT data->>'workflow' FROM journal WHERE kind = 'created' ORDER BY 1"
        )
        return [str(r[0]) for r in rows]


@dataclass(frozen=True, slots=True)
class Mark:
    """What ``<journal>.open`` says: the writer's PID and the last fact it committed."""

    pid: int
    seq: int


class FactTail:
    """``<journal>.tail``: committed facts not yet loaded into DuckDB, one commit per line.

    A line is a JSON list of rows, written with one ``write`` (and, for
    ``durability="machine"``, an ``fdatasync``): a commit is in the file whole or, cut
    by a crash mid-write, not at all (a last line that does not parse was never
    acknowledged). Emptied once DuckDB has its facts; a line whose facts DuckDB has
    already (a crash between the two) is skipped when read.
    """

    SUFFIX = ".tail"

    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + self.SUFFIX)
        self._fd: int | None = None
        self._sync = False
        self._size = 0

    def read(self) -> list[Row]:
        """Every fact in the file, in order (a torn last line is left out)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise JournalError(f"cannot read {self.path}: {exc.strerror or exc}") from exc
        rows: list[Row] = []
        for line in data.split(b"\n"):
            try:
                batch = json.loads(line)
                rows.extend(
                    (str(u), int(q), int(t), str(k), None if s is None else str(s), str(d))
                    for u, q, t, k, s, d in batch
                )
            except (ValueError, TypeError):
                break  # the last line, cut by a crash: never acknowledged
        return rows

    def open(self, *, sync: bool) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._sync = sync
        self._size = os.fstat(self._fd).st_size

    def write(self, rows: Sequence[Row]) -> None:
        assert self._fd is not None
        line = json.dumps(rows, separators=(",", ":")).encode() + b"\n"
        view = memoryview(line)
        while view:
            # A short write (a full disk, a file size limit) is retried, which raises
            # the cause; the torn line left behind is not read back as a commit.
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]
        if self._sync:
            os.fdatasync(self._fd)

    def empty(self) -> None:
        if self._fd is not None and self._size:
            os.ftruncate(self._fd, 0)
            self._size = 0

    def close(self, *, clean: bool) -> None:
        _close_beside(self._fd, self.path, clean=clean)
        self._fd = None


def _close_beside(fd: int | None, path: Path, *, clean: bool) -> None:
    """Close a file kept beside the journal (the tail, the writer mark); a clean close
    removes it."""
    if fd is not None:
        os.close(fd)
        if clean:
            path.unlink(missing_ok=True)
    return None


class WriterMark:
    """``<journal>.open``: present while a writer has the journal open, gone after a clean close.

    It holds the writer's PID and the seq of the last fact it committed, rewritten in
    place after every commit (one ``pwrite`` of a fixed-width line, a few µs, into the
    page cache like the commit itself). A writer that dies leaves it behind; the next
    open then checks that the journal holds every fact up to that seq. DuckDB
    replays its ``.wal`` and the journal loads its tail on open, so a kill loses
    nothing and passes; a lost ``.wal`` (all facts loaded since the last checkpoint
    live only there) or a lost tail does not.
    The writer holds DuckDB's lock on the journal, so only one process writes here.
    """

    WIDTH = 64

    def __init__(self, journal: Path) -> None:
        self.path = journal.with_name(journal.name + ".open")
        self._fd: int | None = None
        self._sync = False

    def read(self) -> Mark | None:
        try:
            data = json.loads(self.path.read_bytes() or b"null")
            return Mark(int(data["pid"]), int(data["seq"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError):
            return None  # a mark torn by a crash while it was first written says nothing

    def open(self, seq: int, *, sync: bool = False) -> None:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._sync = sync
        self.committed(seq)

    def committed(self, seq: int) -> None:
        if self._fd is None:
            return
        line = json.dumps({"pid": os.getpid(), "seq": seq}).encode()
        os.pwrite(self._fd, line.ljust(self.WIDTH - 1) + b"\n", 0)
        if self._sync:
            os.fdatasync(self._fd)

    def close(self, *, clean: bool) -> None:
        _close_beside(self._fd, self.path, clean=clean)
        self._fd = None


_LOCK_PID = re.compile(r"\(PID (\d+)\)")


def _name(path: Path | None, suffix: str) -> str:
    return f"{path}{suffix}" if path is not None else suffix


def _command_of(pid: int | None) -> str:
    """`` (the command line)`` of a process, for messages; empty if it cannot be read."""
    if pid is None:
        return ""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    cmd = " ".join(raw.decode(errors="replace").replace("\0", " ").split())
    return f" ({cmd[:77] + '...' if len(cmd) > 80 else cmd})" if cmd else ""


def encode(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
