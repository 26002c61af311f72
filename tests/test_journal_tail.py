"""The journal's tail: a commit is a line in ``journal.duckdb.tail``, loaded into DuckDB in
batches; what a killed writer left there is loaded by the next open and seen by readers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dynwf.errors import JournalDataLossError
from dynwf.journal import Journal, Row, encode


def rows(first: int, n: int, uid: str = "u1") -> list[Row]:
    out: list[Row] = []
    for seq in range(first, first + n):
        kind = "created" if seq == 1 else "status"
        data = (
            {"workflow": "wf", "scope": "", "id": uid}
            if kind == "created"
            else {"status": "running"}
        )
        out.append((uid, seq, 1_000 + seq, kind, None, encode(data)))
    return out


def killed_writer(path: Path, *batches: tuple[int, int]) -> None:
    """A writer process that commits these (first seq, count) batches, then dies (no close)."""
    code = (
        "import os, sys\n"
        "from dynwf.journal import Journal\n"
        "from tests.test_journal_tail import rows\n"
        f"j = Journal({str(path)!r})\n"
        f"for first, n in {list(batches)!r}:\n"
        "    j.append(rows(first, n))\n"
        "os._exit(0)\n"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=120)


def seqs(j: Journal) -> list[int]:
    return [r[1] for r in j.facts(["u1"]).get("u1", [])]


def test_commits_are_queryable_at_once_and_loaded_in_one_batch(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    j = Journal(path)
    for seq in range(1, 6):
        j.append(rows(seq, 1))
    assert j.unloaded == 5 and j.commits == 5
    tail = path.with_name("journal.duckdb.tail")
    assert len(tail.read_bytes().splitlines()) == 5  # one line per commit
    assert seqs(j) == [1, 2, 3, 4, 5]  # a query loads them first
    assert j.unloaded == 0 and tail.read_bytes() == b""
    j.close()
    assert not tail.exists()  # a clean close leaves no tail


def test_a_killed_writers_tail_is_loaded_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    killed_writer(path, (1, 3), (4, 2))
    assert path.with_name("journal.duckdb.tail").stat().st_size > 0
    j = Journal(path)
    assert j.unloaded == 0  # loaded at open
    assert seqs(j) == [1, 2, 3, 4, 5] and j.next_seq() == 6
    assert path.with_name("journal.duckdb.tail").read_bytes() == b""
    j.close()


def test_a_reader_sees_the_tail_without_changing_the_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    killed_writer(path, (1, 2))
    tail = path.with_name("journal.duckdb.tail").read_bytes()
    r = Journal(path, read_only=True)
    assert seqs(r) == [1, 2]
    assert [i.id for i in r.instances()] == ["u1"]
    r.close()
    assert path.with_name("journal.duckdb.tail").read_bytes() == tail


def test_a_torn_last_line_was_never_committed(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    killed_writer(path, (1, 2), (3, 1))
    tail = path.with_name("journal.duckdb.tail")
    data = tail.read_bytes()
    tail.write_bytes(data[:-7])  # the last commit cut mid-write by the crash
    # its writer's mark says #3; that commit was never acknowledged
    mark = path.with_name("journal.duckdb.open")
    mark.write_text('{"pid": 1, "seq": 2}'.ljust(63) + "\n")
    j = Journal(path)
    assert seqs(j) == [1, 2]
    j.append(rows(3, 1))  # the next writer goes on from there
    assert seqs(j) == [1, 2, 3]
    j.close()


def test_a_tail_after_lost_facts_is_refused_then_dropped_when_accepted(tmp_path: Path) -> None:
    path = tmp_path / "journal.duckdb"
    j = Journal(path)
    j.append(rows(1, 2))
    j.close()
    killed_writer(path, (5, 2))  # facts #3 and #4 are nowhere: a gap before the tail
    with pytest.raises(JournalDataLossError, match=r"committed facts up to #4 .* only up to #2"):
        Journal(path)
    with pytest.raises(JournalDataLossError):
        Journal(path, read_only=True)
    j = Journal(path, accept_data_loss=True)
    assert seqs(j) == [1, 2]  # facts after the lost ones are dropped with them
    j.close()
    reopened = Journal(path)
    assert seqs(reopened) == [1, 2]
    reopened.close()
