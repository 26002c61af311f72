"""The durable engine: instance state machine, step semantics, replay, scheduling."""

from dynwf.engine._binding import Instance, WorkflowBinding
from dynwf.engine._clock import Clock, ManualClock, SystemClock, iso_ms
from dynwf.engine._config import StepConfig, parse_duration, resolve_step_config
from dynwf.engine._engine import (
    Engine,
    EntrypointProgram,
    Faults,
    StepEvent,
    TimeControl,
    Workflow,
    WorkflowProgram,
)
from dynwf.engine._model import InstanceState, StepState
from dynwf.engine._states import Status
from dynwf.engine._step import EventDict, Step, StepHost
from dynwf.engine._views import instance_detail, instance_list_item

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
