"""The pytest plugin and the workflow test API."""

from dynwf.testing._introspect import (
    InstanceIntrospector,
    IntrospectionTimeout,
    Modifier,
    WorkflowIntrospector,
    introspect_workflow,
    introspect_workflow_instance,
    introspectWorkflow,
    introspectWorkflowInstance,
)
from dynwf.testing._project import ProjectHarness, find_project

__all__ = [
    "InstanceIntrospector",
    "IntrospectionTimeout",
    "Modifier",
    "ProjectHarness",
    "WorkflowIntrospector",
    "find_project",
    "introspectWorkflow",
    "introspectWorkflowInstance",
    "introspect_workflow",
    "introspect_workflow_instance",
]
