"""The agent protocol and the record every kind of candidate shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from agentmeta.eval.scorers import extract_answer as extract_answer  # one parser for agents and scorers

if TYPE_CHECKING:
    from agentmeta.models import Model

AgentKind = Literal["code", "graph", "prompt", "conductor"]


@runtime_checkable
class Agent(Protocol):
    """Anything that answers a task: `run(task_input, model) -> answer text`."""

    name: str

    def run(self, task_input: str, model: Model) -> str: ...


class AgentSpec(BaseModel):
    """A candidate as data: what the meta-agent writes and the archive stores."""

    kind: AgentKind
    """code (forward() source), graph (node/edge spec), prompt (one templated call), conductor."""
    name: str
    """A short human name."""
    thought: str = ""
    """The designer's reasoning behind the candidate."""
    source: str
    """Python source (code), JSON spec (graph, prompt, conductor)."""

    def build(self) -> Agent:
        """Compile into a runnable agent (raises `InvalidAgentError` if it is not valid)."""
        if self.kind == "code":
            from agentmeta.agents.code import CodeAgent

            return CodeAgent(self.source, name=self.name)
        if self.kind == "graph":
            from agentmeta.agents.graph import GraphAgent

            return GraphAgent.from_source(self.source, name=self.name)
        if self.kind == "prompt":
            from agentmeta.agents.prompt import PromptAgent

            return PromptAgent.from_source(self.source, name=self.name)
        from agentmeta.agents.registry import build_extra_kind

        return build_extra_kind(self)

    def export(self, directory: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write a readable folder: agent.json (metadata) plus agent.py / graph.json / prompt.json."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        filename = {"code": "agent.py", "graph": "graph.json", "prompt": "prompt.json"}.get(
            self.kind, "agent.json.src"
        )
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
