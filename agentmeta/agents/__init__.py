"""Agents: one protocol (`run(task_input, model) -> answer`), three kinds of candidate.

- code: ADAS-style `forward(self, taskInfo)` source, run in the sandbox
- graph: a declarative spec compiled to a LangGraph `StateGraph`
- prompt: one templated call
"""

from agentmeta.agents.base import Agent, AgentSpec, extract_answer
from agentmeta.agents.code import AgentRunError, CodeAgent, check_code
from agentmeta.agents.graph import GraphAgent, GraphSpec, parse_spec
from agentmeta.agents.loader import find_seed, seed_agents, seed_names, spec_from_file
from agentmeta.agents.prompt import PromptAgent, PromptSpec

__all__ = [
    "Agent",
    "AgentRunError",
    "AgentSpec",
    "CodeAgent",
    "GraphAgent",
    "GraphSpec",
    "PromptAgent",
    "PromptSpec",
    "check_code",
    "extract_answer",
    "find_seed",
    "parse_spec",
    "seed_agents",
    "seed_names",
    "spec_from_file",
]
