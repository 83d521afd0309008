"""Agents: one protocol (`run(task_input, model) -> answer`), kinds of candidate, built-in agents.

Kinds (registered in `agentmeta.registry`; a plugin can add its own, see `agentmeta.agents.kinds`;
strategies ask a kind for its capabilities, such as `slots`, never for its name):

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
from agentmeta.agents.kinds import (
    AgentKind,
    kinds_with,
    register_kind,
    searchable_kind,
    searchable_kinds,
    set_slot,
    slots_of,
)
from agentmeta.agents.loader import find_seed, seed_agents, seed_names, spec_from_file
from agentmeta.agents.prompt import PromptAgent, PromptSpec
from agentmeta.agents.slots import Slot

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
    "Slot",
    "check_code",
    "extract_answer",
    "find_seed",
    "get_agent",
    "get_kind",
    "kind_names",
    "kinds_with",
    "list_agents",
    "majority",
    "parse_spec",
    "register_agent",
    "register_kind",
    "searchable_kind",
    "searchable_kinds",
    "seed_agents",
    "seed_names",
    "set_slot",
    "slots_of",
    "spec_from_file",
]
