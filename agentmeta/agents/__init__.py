"""Agents: one protocol (`run(task_input, model) -> answer`), kinds of candidate, built-in agents.

Kinds (registered in `agentmeta.registry`; a plugin can add its own, see `agentmeta.agents.kinds`):

- code: ADAS-style `forward(self, taskInfo)` source, run in the sandbox
- graph: a declarative spec compiled to a LangGraph `StateGraph`
- prompt: one templated call
- conductor: a meta-prompting conductor design (registered by `agentmeta.conductor`)

Built-in agents (`direct`, `cot`, `cot-sc`) and the answer parser every kind and scorer shares
(`extract_answer`, `majority`) live here too.
"""

from agentmeta.agents.answers import extract_answer, majority
from agentmeta.agents.base import Agent, AgentSpec, get_kind, kind_names
from agentmeta.agents.builtin import get_agent, list_agents, register_agent
from agentmeta.agents.code import AgentRunError, CodeAgent, check_code
from agentmeta.agents.graph import GraphAgent, GraphSpec, parse_spec
from agentmeta.agents.kinds import AgentKind, register_kind, searchable_kind, searchable_kinds
from agentmeta.agents.loader import find_seed, seed_agents, seed_names, spec_from_file
from agentmeta.agents.prompt import PromptAgent, PromptSpec

__all__ = [
    "Agent",
    "AgentKind",
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
    "get_agent",
    "get_kind",
    "kind_names",
    "list_agents",
    "majority",
    "parse_spec",
    "register_agent",
    "register_kind",
    "searchable_kind",
    "searchable_kinds",
    "seed_agents",
    "seed_names",
    "spec_from_file",
]
