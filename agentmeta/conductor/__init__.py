"""Meta-prompting conductor and workflow conductor."""

from agentmeta.conductor import agent as _agent  # noqa: F401 - registers the conductor agent kind
from agentmeta.conductor.agent import ConductorAgent, ConductorSpec
from agentmeta.conductor.core import Conductor, ConductorResult, Turn, parse_experts, parse_final
from agentmeta.conductor.workflow import Step, Workflow, WorkflowResult

__all__ = [
    "Conductor",
    "ConductorAgent",
    "ConductorResult",
    "ConductorSpec",
    "Step",
    "Turn",
    "Workflow",
    "WorkflowResult",
    "parse_experts",
    "parse_final",
]
