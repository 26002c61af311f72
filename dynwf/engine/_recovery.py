"""Recovery: rebuild the instances from the journal and set the unfinished ones going,
at start and after a simulated crash (the test API's ``crash_at``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from dynwf.engine._model import InstanceState, fold
from dynwf.engine._states import FINISHED, Event

if TYPE_CHECKING:
    from dynwf.engine._engine import Engine

log = logging.getLogger("dynwf.engine")


def recover_journal(engine: Engine) -> list[InstanceState]:
    """Index every instance of the journal, load the unfinished ones and recover each."""
    journal = engine.journal
    table = engine.table
    for row in journal.instances():
        table.index[(row.workflow, row.scope, row.id)] = row.uid
    recovered = []
    finished = sorted(s.value for s in FINISHED)
    for uid, rows in journal.unfinished_facts(finished).items():
        st = fold(uid, rows)
        table.states[uid] = st
        _recover(engine, st)
        recovered.append(st)
    if engine.execute:
        # Finished instances with a retention: expire those past it, time the others.
        for uid in journal.retained(finished):
            engine.scheduler.expire_later(engine.state(uid))
    return recovered


def _recover(engine: Engine, st: InstanceState) -> None:
    if not engine.execute or not engine.drives_instance(st):
        return  # left exactly as journaled, for whichever engine drives it
    before = st.status
    engine.set_status(st, Event.RECOVER)  # what follows (a pass, timers) is the engine's
    log.debug("recovered %s (%s -> %s)", st.id, before, st.status)


async def recover_after_crash(engine: Engine) -> None:
    """Forget everything in memory once the frozen engine's passes are gone, then
    recover from the journal as a fresh process would."""
    sched, commits = engine.scheduler, engine.group_commit
    await asyncio.sleep(0)
    sched.abort_all()
    while sched.tasks:
        # whatever waits for a commit of the dead engine is cancelled, however often
        # a pass being torn down asks again
        commits.cancel_dead_waiters()
        await asyncio.wait(set(sched.tasks), timeout=0.05)
    for handle in sched.delayed:
        handle.cancel()
    commits.drop()
    engine.table.clear()
    sched.reset()
    engine.crashes += 1
    commits.frozen = False
    recover_journal(engine)
    sched.timer_changed.set()
    sched.update_idle()
