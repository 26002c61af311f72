"""The durable engine: instance state machine, step semantics, replay, scheduling.

This namespace is the engine's public surface: the code that hosts tenant code
(dispatch, testing, run, client, server) uses these names and no private module.
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
    from dynwf.engine._engine import Engine
    from dynwf.engine._model import InstanceState, StepState, fold
    from dynwf.engine._modify import Modifiers, StepRef, TimeControl
    from dynwf.engine._pass import PassInterrupted, PassParked
    from dynwf.engine._rules import DEFAULT_COMPATIBILITY_DATE, check_id_batch
    from dynwf.engine._states import FINISHED, Status
    from dynwf.engine._step import (
        DoBegin,
        EventDict,
        Outcome,
        Step,
        StepHost,
        error_from_dict,
        error_to_dict,
    )
    from dynwf.engine._views import instance_detail, instance_list_item
    from dynwf.engine._workflow import (
        EntrypointProgram,
        Faults,
        StatusChange,
        StepEvent,
        Workflow,
        WorkflowProgram,
    )

_WHERE = {
    "Clock": "dynwf.engine._clock",
    "DEFAULT_COMPATIBILITY_DATE": "dynwf.engine._rules",
    "DoBegin": "dynwf.engine._step",
    "Engine": "dynwf.engine._engine",
    "EntrypointProgram": "dynwf.engine._workflow",
    "EventDict": "dynwf.engine._step",
    "FINISHED": "dynwf.engine._states",
    "Faults": "dynwf.engine._workflow",
    "Instance": "dynwf.engine._binding",
    "InstanceState": "dynwf.engine._model",
    "ManualClock": "dynwf.engine._clock",
    "Modifiers": "dynwf.engine._modify",
    "Outcome": "dynwf.engine._step",
    "PassInterrupted": "dynwf.engine._pass",
    "PassParked": "dynwf.engine._pass",
    "Status": "dynwf.engine._states",
    "Step": "dynwf.engine._step",
    "StepConfig": "dynwf.engine._config",
    "StatusChange": "dynwf.engine._workflow",
    "StepEvent": "dynwf.engine._workflow",
    "StepHost": "dynwf.engine._step",
    "StepRef": "dynwf.engine._modify",
    "StepState": "dynwf.engine._model",
    "SystemClock": "dynwf.engine._clock",
    "TimeControl": "dynwf.engine._modify",
    "Workflow": "dynwf.engine._workflow",
    "WorkflowBinding": "dynwf.engine._binding",
    "WorkflowProgram": "dynwf.engine._workflow",
    "check_id_batch": "dynwf.engine._rules",
    "error_from_dict": "dynwf.engine._step",
    "error_to_dict": "dynwf.engine._step",
    "fold": "dynwf.engine._model",
    "instance_detail": "dynwf.engine._views",
    "instance_list_item": "dynwf.engine._views",
    "iso_ms": "dynwf.engine._clock",
    "parse_duration": "dynwf.engine._config",
    "resolve_step_config": "dynwf.engine._config",
}

__all__ = [
    "DEFAULT_COMPATIBILITY_DATE",
    "FINISHED",
    "Clock",
    "DoBegin",
    "Engine",
    "EntrypointProgram",
    "EventDict",
    "Faults",
    "Instance",
    "InstanceState",
    "ManualClock",
    "Modifiers",
    "Outcome",
    "PassInterrupted",
    "PassParked",
    "Status",
    "StatusChange",
    "Step",
    "StepConfig",
    "StepEvent",
    "StepHost",
    "StepRef",
    "StepState",
    "SystemClock",
    "TimeControl",
    "Workflow",
    "WorkflowBinding",
    "WorkflowProgram",
    "check_id_batch",
    "error_from_dict",
    "error_to_dict",
    "fold",
    "instance_detail",
    "instance_list_item",
    "iso_ms",
    "parse_duration",
    "resolve_step_config",
]


__getattr__, __dir__ = lazy_namespace(__name__, _WHERE, globals())
