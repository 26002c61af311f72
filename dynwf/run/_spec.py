"""What one ``dynwf run`` asks for: crash and eviction points, time control, the instance."""

from __future__ import annotations

import difflib
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from dynwf.errors import ValidationError

When = Literal["before", "after", "during"]
WHENS: tuple[When, ...] = ("before", "after", "during")


@dataclass(frozen=True, slots=True)
class StepPoint:
    """The ``count``-th call of step ``name`` (``STEP#N``), with a moment for crashes."""

    name: str
    count: int = 1
    when: When = "after"

    def label(self, *, with_when: bool = True) -> str:
        base = f"{self.name}#{self.count}"
        return f"{base}:{self.when}" if with_when else base


def parse_point(text: str, *, option: str, allow_when: bool) -> StepPoint:
    """``STEP[#N][:before|:after|:during]``; the step name itself may contain ``#`` or ``:``.

    For --crash-at, text after the last ``:`` must be a moment, so a misspelt one is
    refused here, before anything runs, instead of naming a step that never runs; a
    step whose name has a ``:`` is written with its moment (``db:write:after``).
    """
    rest, when = text, "after"
    head, sep, tail = rest.rpartition(":")
    if sep and tail in WHENS:
        if not allow_when:
            raise ValidationError(
                f"{option} {text!r}: a moment (:{tail}) applies to --crash-at only; "
                f"write {option} STEP[#N]"
            )
        rest, when = head, tail
    elif sep and allow_when:
        close = difflib.get_close_matches(tail, WHENS, n=1)
        hint = f" (did you mean :{close[0]}?)" if close else ""
        raise ValidationError(
            f"{option} {text!r}: {tail!r} is not a moment{hint}; write "
            f"{option} STEP[#N][:before|:after|:during], and for a step whose name has a "
            f"':' give the moment too, e.g. {option} {shlex.quote(text + ':after')}"
        )
    count = 1
    head, sep, tail = rest.rpartition("#")
    if sep and tail.isdigit():
        rest, count = head, int(tail)
        if count < 1:
            raise ValidationError(f"{option} {text!r}: #N counts calls from 1; write #1 or more")
    if not rest:
        raise ValidationError(
            f"{option} {text!r}: no step name; write {option} STEP[#N]"
            + ("[:before|:after|:during]" if allow_when else "")
        )
    return StepPoint(rest, count, when)  # type: ignore[arg-type]


@dataclass(slots=True)
class RunSpec:
    """Everything a child engine process needs; written as JSON for it."""

    config: str
    persist_to: str | None
    workflow: str
    binding: str
    metadata: Any
    id: str
    params: Any
    create: bool = True
    crashes: list[StepPoint] = field(default_factory=list)
    evictions: list[StepPoint] = field(default_factory=list)
    hibernate_every_step: bool = False
    skip_sleeps: bool = False
    skip_retry_delays: bool = False
    max_wait_ms: int = 30_000
    inline: bool = False
    process: int = 1
    markers_file: str = ""
    result_file: str = ""
    supervisor: int = 0  # the supervisor's PID: the engine process dies with it
    accept_data_loss: bool = False
    progress_fd: int = -1  # a pipe to the parent for progress lines; -1 for none

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        data = json.loads(path.read_text())
        data["crashes"] = [StepPoint(**p) for p in data["crashes"]]
        data["evictions"] = [StepPoint(**p) for p in data["evictions"]]
        return cls(**data)
