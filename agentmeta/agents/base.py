"""The agent protocol and the record every kind of candidate shares."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, field_validator

from agentmeta.agents.answers import extract_answer as extract_answer  # one parser for agents and scorers
from agentmeta.errors import ConfigError
from agentmeta.registry import registry

if TYPE_CHECKING:
    from agentmeta.agents.kinds import AgentKind
    from agentmeta.models import Model


@runtime_checkable
class Agent(Protocol):
    """Anything that answers a task: `run(task_input, model) -> answer text`."""

    name: str

    def run(self, task_input: str, model: Model) -> str: ...


def kind_names() -> list[str]:
    """The registered agent kinds (built-ins first, then plugins)."""
    return registry.names("kind")


def get_kind(name: str) -> AgentKind:
    """The registered agent kind `name`; `ConfigError` listing the registered kinds if there is none."""
    if not registry.has("kind", name):
        raise ConfigError(
            f"unknown agent kind {name!r}; registered kinds: {', '.join(kind_names())} "
            "(a plugin's kind needs its package installed)"
        )
    return registry.get("kind", name)  # type: ignore[no-any-return]


class AgentSpec(BaseModel):
    """A candidate as data: what the meta-agent writes and the archive stores."""

    kind: str
    """A registered agent kind: code (forward() source), graph (node/edge spec), prompt (one
    templated call), conductor, or a plugin's kind (`agentmeta plugins` lists them)."""
    name: str
    """A short human name."""
    thought: str = ""
    """The designer's reasoning behind the candidate."""
    source: str
    """What the kind builds from: Python source (code), a JSON spec (graph, prompt, conductor)."""

    @field_validator("kind")
    @classmethod
    def _registered_kind(cls, v: str) -> str:
        get_kind(v)  # raises ConfigError naming the registered kinds
        return v

    def build(self) -> Agent:
        """Compile into a runnable agent (raises `InvalidAgentError` if it is not valid).

        The agent keeps this spec as `agent_spec`, so another process (a Ray actor) can build the
        same agent from data instead of a pickled object."""
        agent = get_kind(self.kind).build(self)
        with contextlib.suppress(AttributeError, TypeError):  # a plugin's agent may refuse attributes
            agent.agent_spec = self  # type: ignore[attr-defined]
        return agent

    def export(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write a readable folder: agent.json (metadata) plus the source file its kind names
        (agent.py, graph.json, prompt.json, ...)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        filename = get_kind(self.kind).filename
        (out / filename).write_text(self.source)
        meta = {
            "kind": self.kind,
            "name": self.name,
            "thought": self.thought,
            "file": filename,
            **(metadata or {}),
        }
        (out / "agent.json").write_text(json.dumps(meta, indent=2) + "\n")
        return out
