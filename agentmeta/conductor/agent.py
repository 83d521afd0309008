"""The conductor as an agent kind: a conductor configuration is a candidate like any other.

Registered in the registry's "kind" category as `conductor` (YAML/JSON files with a `conductor`
key or `kind: conductor`); it has no proposal schema, so searches do not write conductors.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field, ValidationError

from agentmeta.agents.answers import extract_answer
from agentmeta.agents.base import AgentSpec
from agentmeta.agents.kinds import AgentKind, register_kind
from agentmeta.conductor.core import Conductor
from agentmeta.errors import InvalidAgentError

if TYPE_CHECKING:
    from agentmeta.models import Model


class ConductorSpec(BaseModel):
    """A conductor design: template, rounds and allowed experts."""

    template: str = "conductor"
    """Name of the conductor prompt template in prompts/."""
    max_rounds: int = Field(default=6, ge=1, le=30)
    python_expert: bool = True
    allowed_experts: list[str] | None = None
    """Expert names it may call (None: any)."""
    max_tokens: int = Field(default=384, ge=16, le=4096)


class ConductorAgent:
    kind = "conductor"

    def __init__(self, spec: ConductorSpec, name: str = "conductor") -> None:
        self.spec = spec
        self.name = name
        self.source = spec.model_dump_json(indent=2)

    def run(self, task_input: str, model: Model) -> str:
        c = Conductor(
            model=model,
            max_rounds=self.spec.max_rounds,
            python_expert=self.spec.python_expert,
            template=self.spec.template,
            allowed_experts=self.spec.allowed_experts,
            max_tokens=self.spec.max_tokens,
            expert_max_tokens=self.spec.max_tokens,
            max_seconds=None,  # a wall-clock cut would make a score depend on the machine's load
        )
        return extract_answer(c.run(task_input).answer)


def build_conductor(spec: AgentSpec) -> ConductorAgent:
    """A `ConductorAgent` from a spec whose source is a `ConductorSpec` as JSON (empty: defaults)."""
    try:
        data = json.loads(spec.source) if spec.source.strip() else {}
        cs = ConductorSpec.model_validate(data)
    except (ValueError, ValidationError) as e:
        raise InvalidAgentError(f"conductor spec is not valid: {str(e).splitlines()[0]}") from e
    return ConductorAgent(cs, name=spec.name)


CONDUCTOR = register_kind(
    AgentKind(
        name="conductor",
        build=build_conductor,
        description="a meta-prompting conductor design: template, rounds and allowed experts",
        suffixes=(".yaml", ".yml", ".json"),
        markers=("conductor",),
        filename="conductor.json",
    )
)
