"""Cron ``schedules`` of a project's workflows: each firing creates one instance.

As on Cloudflare, a firing creates an instance through the engine's ordinary create
path, with no params and ``event["schedule"] = {"cron": str, "scheduledTime": int}``
(epoch ms, UTC, the minute the cron named). Times are UTC; a firing missed while no
``dynwf dev`` ran is not made up afterwards (Cron Triggers do not backfill either).

The instance id is ``cron-<scheduledTime>-<8 hex of the cron>``: one id per cron and
minute, so a firing is created once even if the server restarts within that minute.
Cloudflare's local engine names it ``<cron>-<scheduledTime>``, which holds spaces and
``*``, characters an instance id may not contain.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dynwf.config import Cron, parse_cron
from dynwf.engine import InstanceState
from dynwf.errors import InstanceExistsError, ValidationError, WorkflowNotFoundError

if TYPE_CHECKING:
    from dynwf.project._project import Project

# Under the dev server's logger, so `dynwf dev` prints each firing with its request lines.
log = logging.getLogger("dynwf.server.schedules")


@dataclass(frozen=True, slots=True)
class Schedule:
    """One cron of one workflow."""

    workflow: str  # the workflow's name
    binding: str
    cron: Cron


def _latest(cron: Cron, after: int, upto: int) -> int | None:
    """The last fire time in ``(after, upto]``, if any."""
    found = None
    at = cron.next_after(after)
    for _ in range(100_000):  # a month of minutes; a longer gap fires an older time
        if at is None or at > upto:
            break
        found, at = at, cron.next_after(at)
    return found


def schedule_instance_id(cron: str, scheduled_ms: int) -> str:
    return f"cron-{scheduled_ms}-{hashlib.sha256(cron.encode()).hexdigest()[:8]}"


class Scheduler:
    """Fires a project's schedules while ``run()`` runs; ``fire()`` fires one at once."""

    def __init__(self, project: Project) -> None:
        self._project = project
        self.schedules = tuple(
            Schedule(wf.name, wf.binding, parse_cron(cron))
            for wf in project.config.workflows
            if not wf.script_name
            for cron in wf.schedules
        )

    async def run(self) -> None:
        """Fire every schedule at its times until cancelled.

        A wake later than a fire time (a busy machine, a suspended laptop, a test clock
        moved on) fires each cron once, at its latest time that has passed.
        """
        clock = self._project.engine.clock
        since = clock.now_ms()  # nothing before the start fires: no catching up
        while self.schedules:
            times = [t for s in self.schedules if (t := s.cron.next_after(since)) is not None]
            if not times:
                return
            now = clock.now_ms()
            if now < min(times):
                # a fresh event: a manual clock sets it on every move, and never clears it
                await clock.wait(min(times) - now, asyncio.Event())
                continue
            for schedule in self.schedules:
                at = _latest(schedule.cron, since, now)
                if at is not None:
                    await self._fire_logged(schedule, at)
            since = now

    async def _fire_logged(self, schedule: Schedule, at: int) -> None:
        try:
            st = await self._create(schedule, schedule.cron.expression, at)
        except InstanceExistsError:
            return  # fired before a restart within the same minute
        except Exception:
            log.exception(
                "schedule %r of workflow %r failed", schedule.cron.expression, schedule.workflow
            )
            return
        log.info(
            "schedule %r fired: workflow %r instance %r",
            schedule.cron.expression,
            schedule.workflow,
            st.id,
        )

    async def fire(self, workflow: str, cron: str | None = None) -> InstanceState:
        """Fire ``workflow``'s schedule ``cron`` (default: its first) now, as its time had come.

        ``workflow`` is a workflow name or binding. ``WorkflowNotFoundError`` if there is
        no such workflow; ``ValidationError`` if it has no such schedule.
        """
        known = {s.workflow for s in self.schedules} | {s.binding for s in self.schedules}
        mine = [s for s in self.schedules if workflow in (s.workflow, s.binding)]
        if not mine:
            names = {wf.name for wf in self._project.config.workflows} | {
                wf.binding for wf in self._project.config.workflows
            }
            if workflow not in names:
                raise WorkflowNotFoundError(
                    f"no workflow {workflow!r} in {self._project.config.path.name}; "
                    f"ones with schedules: {', '.join(sorted(known)) or 'none'}"
                )
            raise ValidationError(
                f'workflow {workflow!r} has no schedules; add schedules = "<cron>" to its '
                f"[[workflows]] entry in {self._project.config.path.name}"
            )
        chosen = (
            mine[0] if cron is None else next((s for s in mine if s.cron.expression == cron), None)
        )
        if chosen is None:
            listed = ", ".join(repr(s.cron.expression) for s in mine)
            raise ValidationError(
                f"workflow {workflow!r} has no schedule {cron!r}; its schedules: {listed}"
            )
        return await self._create(
            chosen, chosen.cron.expression, self._project.engine.clock.now_ms()
        )

    async def _create(self, schedule: Schedule, cron: str, at: int) -> InstanceState:
        return await self._project.engine.create(
            schedule.workflow,
            "",
            {"id": schedule_instance_id(cron, at)},
            schedule={"cron": cron, "scheduledTime": at},
        )
