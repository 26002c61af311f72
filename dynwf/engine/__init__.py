"""The durable engine: instance state machine, step semantics, replay, scheduling.

Names are imported on first use (PEP 562), so a process that needs one part
(an isolate needs the tenant-side step code) does not load the rest (the journal, DuckDB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynwf._lazy import lazy_namespace

if TYPE_CHECKING:
    from dynwf.engine._binding import Instance, WorkflowBinding
    from dynwf.engine._clock import Clock, ManualClock, SystemClock, iso_ms
    from dynwf.engine._config import StepConfig, parse_duration, resolve_step_config
    from dynwf.engine._engine import (
        Engine,
        EntrypointProgram,
        Faults,
        StatusChange,
        StepEvent,
        TimeControl,
        Workflow,
        WorkflowProgram,
    )
    from dynwf.engine._model import InstanceState, StepState
    from dynwf.engine._states import Status
    from dynwf.engine._step import EventDict, Step, StepHost
    from dynwf.engine._views import instance_detail, instance_list_item

_WHERE = {
    "Clock": "dynwf.engine._clock",
    "Engine": "dynwf.engine._engine",
    "EntrypointProgram": "dynwf.engine._engine",
    "EventDict": "dynwf.engine._step",
    "Faults": "dynwf.engine._engine",
    "Instance": "dynwf.engine._binding",
    "InstanceState": "dynwf.engine._model",
    "ManualClock": "dynwf.engine._clock",
    "Status": "dynwf.engine._states",
    "Step": "dynwf.engine._step",
    "StepConfig": "dynwf.engine._config",
    "StatusChange": "dynwf.engine._engine",
    "StepEvent": "dynwf.engine._engine",
    "StepHost": "dynwf.engine._step",
    "StepState": "dynwf.engine._model",
    "SystemClock": "dynwf.engine._clock",
    "TimeControl": "dynwf.engine._engine",
    "Workflow": "dynwf.engine._engine",
    "WorkflowBinding": "dynwf.engine._binding",
    "WorkflowProgram": "dynwf.engine._engine",
    "instance_detail": "dynwf.engine._views",
    "instance_list_item": "dynwf.engine._views",
    "iso_ms": "dynwf.engine._clock",
    "parse_duration": "dynwf.engine._config",
    "resolve_step_config": "dynwf.engine._config",
}

__all__ = [
    "Clock",
    "Engine",
    "EntrypointProgram",
    "EventDict",
    "Faults",
    "Instance",
    "InstanceState",
    "ManualClock",
    "Status",
    "StatusChange",
    "Step",
    "StepConfig",
    "StepEvent",
    "StepHost",
    "StepState",
    "SystemClock",
    "TimeControl",
    "Workflow",
    "WorkflowBinding",
    "WorkflowProgram",
    "instance_detail",
    "instance_list_item",
    "iso_ms",
    "parse_duration",
    "resolve_step_config",
]


__getattr__, __dir__ = lazy_namespace(__name__, _WHERE, globals())
