"""Group commit: facts recorded in one event-loop turn share one journal commit.

Every change of state is a fact: ``record`` applies it to the instance and queues
it for the journal; a commit is scheduled on the next loop iteration, so all the
facts the ready instances produce in one iteration share one commit (group
commit) while a lone instance still commits once per step with no added delay.
Code that must not go on before its facts are durable awaits ``durable()``.

A commit that fails stops the engine (fail-stop): the facts of that commit and any
recorded after it are dropped, every ``durable()`` raises ``JournalCommitError``, and
the engine's ``on_fatal`` hook stops every pass. The journal then holds exactly what
was acknowledged, and a restart recovers from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynwf.engine._clock import Clock
from dynwf.engine._model import InstanceState
from dynwf.errors import JournalCommitError, JournalError
from dynwf.journal import Journal, Row, encode

log = logging.getLogger("dynwf.engine")
# How long a step's result may wait for the next step's attempt fact to share its
# commit (see GroupCommit.record). Never longer than this, and never past the next callback.
LAZY_COMMIT_S = 0.005
# How long committed facts may wait in the journal's tail before they are loaded into
# DuckDB (``Journal.load``): a batch a few times a second costs little, an INSERT per
# commit would cost more than a step. (Each INSERT costs a few ms of the engine's loop
# whatever its size: at 20 a second a burst of 1,000 new tenants spent ~1 s in them.)
LOAD_DELAY_S = 0.25


class GroupCommit:
    """The queue of facts not yet committed, and the commits that empty it."""

    def __init__(
        self,
        journal_path: Path | None,
        clock: Clock,
        on_fatal: Callable[[JournalCommitError], None],
    ) -> None:
        self.journal_path = journal_path
        self.journal: Journal | None = None
        self.clock = clock
        self.on_fatal = on_fatal
        self.fatal: JournalCommitError | None = None
        # A simulated crash is under way: nothing reaches the journal, nobody is answered.
        self.frozen = False
        self.pending: list[Row] = []
        self.seq = 0
        # Called with None (or the error) once the next commit is made: ``when_durable``.
        self._on_commit: list[Callable[[BaseException | None], None]] = []
        # The scheduled flush: at once (call_soon) or, for a step's result, a moment
        # later, so the next step's attempt fact shares its commit (see ``record``).
        self._flush_handle: asyncio.Handle | None = None
        self._flush_lazy = False
        self._load_handle: asyncio.TimerHandle | None = None
        # durable() waiters of a frozen engine (a simulated crash), cancelled by it
        self._dead_waiters: list[asyncio.Future[None]] = []

    def open(self, journal: Journal) -> None:
        self.journal = journal
        self.fatal = None
        self.seq = journal.next_seq()

    def record(
        self,
        st: InstanceState,
        kind: str,
        step: str | None,
        data: dict[str, Any],
        *,
        lazy: bool = False,
    ) -> None:
        """Apply a fact to the instance and queue it for the next commit.

        The commit runs at the end of this event-loop turn, shared by every fact
        recorded in it (group commit). A ``lazy`` fact (a step's result) may wait up
        to ``LAZY_COMMIT_S`` for company: the result only has to be durable before the
        next step's callback runs, and that step's ``attempt`` fact, recorded a
        round trip later when the tenant runs in an isolate, then shares its commit.
        ``durable()`` and any non-lazy fact bring a waiting commit forward.
        """
        if self.frozen or self.fatal is not None:
            return  # the (simulated) process is dead, or a commit failed: this fact is lost
        seq = self.seq
        self.seq += 1
        ts = self.clock.now_ms()
        st.apply(seq, ts, kind, step, data)
        self.pending.append((st.uid, seq, ts, kind, step, encode(data)))
        loop = asyncio.get_running_loop()
        if self._flush_handle is None:  # no commit scheduled yet
            if lazy:
                self._flush_handle = loop.call_later(LAZY_COMMIT_S, self._flush)
                self._flush_lazy = True
            else:
                self._flush_handle = loop.call_soon(self._flush)
        elif self._flush_lazy and not lazy:
            self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)
        self._flush_lazy = False

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()  # commit_now() ran it before its turn
            self._flush_handle = None
        self._flush_lazy = False
        rows, self.pending = self.pending, []
        callbacks, self._on_commit = self._on_commit, []
        error: BaseException | None = None
        if self.fatal is not None:
            error = self.fatal
        elif rows:
            try:
                if self.journal is None:
                    raise RuntimeError("the engine is stopped")
                self.journal.append(rows)
            except BaseException as exc:
                error = self._fail_stop(exc)
            else:
                if self._load_handle is None:
                    self._load_handle = asyncio.get_running_loop().call_later(
                        LOAD_DELAY_S, self._load
                    )
        for callback in callbacks:
            try:
                callback(error)
            except Exception:
                log.exception("a commit callback failed")

    def _load(self) -> None:
        """Load the journal's tail into DuckDB (see ``Journal.load``); a failure stops the
        engine as a failed commit does (the facts stay safe in the tail)."""
        self._load_handle = None
        if self.journal is None or self.fatal is not None or self.frozen:
            return
        try:
            self.journal.load()
        except JournalError as exc:
            self._fail_stop(exc)

    def _fail_stop(self, exc: BaseException) -> JournalCommitError:
        """Stop after a failed commit: nothing recorded from now on reaches the journal
        (facts applied in memory but not committed die with this process), no pass goes
        on, and whoever waits for durability gets the error."""
        where = self.journal_path or "the in-memory journal"
        text = (
            str(exc) if str(exc).startswith("a commit to") else f"a commit to {where} failed: {exc}"
        )
        error = JournalCommitError(
            f"{text}; the engine stopped there (nothing after its last good commit was "
            "acknowledged or run): fix the cause (a full disk? a file size limit?), then "
            "start again: unfinished instances resume from what the journal holds"
        )
        error.__cause__ = exc
        self.fatal = error
        log.debug("%s", error)  # the host reports it: one line, from durable() or "fatal"
        self.on_fatal(error)
        return error

    @property
    def commits(self) -> int:
        return self.journal.commits if self.journal is not None else 0

    def commit_now(self) -> None:
        """Commit what is queued immediately (used before a deliberate crash and at stop)."""
        if self.pending:
            self._flush()

    async def durable(self) -> None:
        """Return once every fact recorded so far is committed (raise if that fails)."""
        if self.fatal is not None:
            raise self.fatal
        if self._flush_handle is None and not self.frozen:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.frozen:
            # A dead process answers nothing: the simulated crash cancels this waiter.
            self._dead_waiters.append(waiter)
            await waiter
            return

        def committed(error: BaseException | None) -> None:
            if waiter.done():  # its task was cancelled meanwhile
                return
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

        self.when_durable(committed)
        await waiter

    def when_durable(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(None)`` once every fact recorded so far is committed (now, if it
        is), or ``callback(error)`` if that commit fails: ``durable()`` without a task,
        called in the commit's own loop turn. A frozen engine (a simulated crash) never
        calls back: a dead process answers nothing."""
        if self.frozen:
            return
        if self.fatal is not None:
            callback(self.fatal)
            return
        if self._flush_handle is None:
            callback(None)
            return
        if self._flush_lazy:
            self._flush_soon()
        self._on_commit.append(callback)

    def cancel_dead_waiters(self) -> None:
        for waiter in self._dead_waiters:
            waiter.cancel()
        self._dead_waiters.clear()

    def drop(self) -> None:
        """Forget what is queued, as a dead process would; its waiters hear nothing more."""
        self.pending.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        waiting, self._on_commit = self._on_commit, []
        for callback in waiting:  # as a dead process's callers would: nobody waits on
            callback(None)

    @property
    def busy(self) -> bool:
        return bool(self.pending) or self.frozen
