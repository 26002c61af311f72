"""The instance state machine, as data. Every status change goes through ``transition``.

Rules:
- Statuses and the events that move between them are the two enums below; the
  ``TRANSITIONS`` table is the whole machine. No other module compares statuses
  to decide what may happen next.
- An event missing from a status's row is an error (``InvalidStateError``), unless
  the status is listed in ``NOOP`` for that event, in which case nothing changes.
- ``transition`` only answers; the engine's ``set_status`` records the change and hands
  it to the one place that reacts to it (``Scheduler.react``).
- ``queued`` means runnable (waiting for a run slot); ``running`` means a run pass
  is in progress; ``waiting`` means hibernated on a sleep, retry delay or event.
"""

from __future__ import annotations

from enum import StrEnum

from dynwf.errors import InvalidStateError


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    UNKNOWN = "unknown"


class Event(StrEnum):
    CREATE = "create"  # the instance was created
    START = "start"  # a run pass begins
    SUSPEND = "suspend"  # the pass ended on a sleep, retry delay or event wait
    WAKE = "wake"  # a timer fired or an awaited event arrived
    COMPLETE = "complete"  # run() returned
    FAIL = "fail"  # run() raised
    PAUSE = "pause"  # user asked to pause
    PAUSED = "paused"  # the pass reached a step boundary while waitingForPause
    RESUME = "resume"
    TERMINATE = "terminate"
    RESTART = "restart"
    RECOVER = "recover"  # the engine (re)started and found the instance unfinished


S, E = Status, Event

TRANSITIONS: dict[Status, dict[Event, Status]] = {
    S.QUEUED: {
        E.START: S.RUNNING,
        E.WAKE: S.QUEUED,
        E.PAUSE: S.PAUSED,
        E.TERMINATE: S.TERMINATED,
        E.RESTART: S.QUEUED,
        E.RECOVER: S.QUEUED,
    },
    S.RUNNING: {
        E.SUSPEND: S.WAITING,
        E.COMPLETE: S.COMPLETE,
        E.FAIL: S.ERRORED,
        E.PAUSE: S.WAITING_FOR_PAUSE,
        E.TERMINATE: S.TERMINATED,
        E.RESTART: S.QUEUED,
        E.RECOVER: S.QUEUED,
        E.WAKE: S.RUNNING,
    },
    S.WAITING: {
        E.WAKE: S.QUEUED,
        E.PAUSE: S.PAUSED,
        E.TERMINATE: S.TERMINATED,
        E.RESTART: S.QUEUED,
        E.RECOVER: S.WAITING,
    },
    S.WAITING_FOR_PAUSE: {
        E.PAUSED: S.PAUSED,
        E.SUSPEND: S.PAUSED,
        E.COMPLETE: S.COMPLETE,
        E.FAIL: S.ERRORED,
        E.RESUME: S.RUNNING,
        E.TERMINATE: S.TERMINATED,
        E.RESTART: S.QUEUED,
        E.RECOVER: S.PAUSED,
        E.WAKE: S.WAITING_FOR_PAUSE,
    },
    S.PAUSED: {
        E.RESUME: S.QUEUED,
        E.TERMINATE: S.TERMINATED,
        E.RESTART: S.QUEUED,
        E.RECOVER: S.PAUSED,
        E.WAKE: S.PAUSED,
    },
    S.COMPLETE: {E.RESTART: S.QUEUED, E.RECOVER: S.COMPLETE},
    S.ERRORED: {E.RESTART: S.QUEUED, E.RECOVER: S.ERRORED},
    S.TERMINATED: {E.RESTART: S.QUEUED, E.RECOVER: S.TERMINATED},
    # no status fact yet: a state being built, or a journal written without one
    S.UNKNOWN: {E.CREATE: S.QUEUED, E.RECOVER: S.QUEUED},
}

NOOP: dict[Event, frozenset[Status]] = {
    E.RESUME: frozenset({S.QUEUED, S.RUNNING, S.WAITING, S.COMPLETE, S.ERRORED, S.TERMINATED}),
    E.PAUSE: frozenset({S.PAUSED, S.WAITING_FOR_PAUSE}),
    E.WAKE: frozenset({S.COMPLETE, S.ERRORED, S.TERMINATED}),
}

FINISHED = frozenset({S.COMPLETE, S.ERRORED, S.TERMINATED})


def transition(status: Status, event: Event, *, instance: str = "") -> Status:
    """The status after ``event``; ``status`` itself for a documented no-op."""
    nxt = TRANSITIONS[status].get(event)
    if nxt is not None:
        return nxt
    if status in NOOP.get(event, frozenset()):
        return status
    where = f"instance {instance!r} " if instance else "the instance "
    raise InvalidStateError(
        f"cannot {event.value} {where}while it is {status.value}"
        + ("; it has finished (restart it to run it again)" if status in FINISHED else "")
    )
