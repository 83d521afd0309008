"""The built-in baseline agents and agent lookup by name.

Built-ins are registered in the registry's "agent" category (`direct`, `cot`, `cot-sc`) so a result
can name the agent it came from; a plugin adds one with `register_agent` (the same as
`agentmeta.registry.register("agent", name)`): a factory whose keyword arguments configure it.
`get_agent` finds an agent by registered name, seed name (`graph/self_refine`) or agent file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentmeta.agents.answers import majority as majority  # re-exported: the vote of cot-sc
from agentmeta.agents.base import Agent
from agentmeta.agents.loader import agent_file_suffixes, find_seed, seed_names, spec_from_file
from agentmeta.errors import ConfigError
from agentmeta.prompts import render
from agentmeta.registry import registry

AgentFactory = Callable[..., Agent]

DEFAULT_MAX_TOKENS = 256
"""Completion budget of the built-in agents (the runner's `max_tokens` caps it)."""


@runtime_checkable
class _Runs(Protocol):
    """Anything with `run(task_input, model) -> str` (a name is optional)."""

    def run(self, task_input: str, model: Any) -> str: ...


def register_agent(name: str, doc: str = "") -> Callable[[AgentFactory], AgentFactory]:
    """Register an agent factory under `name` (keyword arguments configure it); the same as
    `agentmeta.registry.register("agent", name, doc)`."""
    return registry.register("agent", name, doc)


def list_agents() -> dict[str, str]:
    """Registered agent names with one line each."""
    return {e.name: e.doc for e in sorted(registry.entries("agent"), key=lambda e: e.name)}


class _CallableAgent:
    def __init__(self, fn: Callable[[str, Any], str]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "agent")

    def run(self, task_input: str, model: Any) -> str:
        return self.fn(task_input, model)


def get_agent(agent: str | Agent | Callable[[str, Any], str], **kwargs: Any) -> tuple[Agent, str]:
    """The agent object and its display name, from a registered name, a seed name, an agent file,
    an object with `run(task_input, model)` or a function of that shape."""
    if isinstance(agent, str):
        if registry.has("agent", agent):
            return registry.get("agent", agent)(**kwargs), agent
        found = _file_or_seed_agent(agent)
        if found is not None:
            return found, agent
        raise ConfigError(
            f"unknown agent {agent!r}; built-in agents: {', '.join(sorted(registry.names('agent')))}; "
            f"seed agents: {', '.join(seed_names())}; or a .py/.yaml/.json agent file"
        )
    if isinstance(agent, _Runs):
        return agent, str(getattr(agent, "name", type(agent).__name__))  # type: ignore[return-value]
    if callable(agent):
        wrapped = _CallableAgent(agent)
        return wrapped, wrapped.name  # type: ignore[return-value]
    raise ConfigError(
        f"agent must be a name, an object with run(task_input, model) or a function; "
        f"got {type(agent).__name__}"
    )


def _file_or_seed_agent(name: str) -> Agent | None:
    """A seed agent of `archive/` (`code/self_refine`) or an agent file, built; None if neither."""
    if name.endswith(agent_file_suffixes()) and Path(name).is_file():
        return spec_from_file(name).build()
    spec = find_seed(name)
    return spec.build() if spec is not None else None


# ----------------------------------------------------------------------------- built-in agents


class TemplateAgent:
    """One call with a template from `prompts/`; returns the completion."""

    def __init__(
        self, template: str, name: str, max_tokens: int = DEFAULT_MAX_TOKENS, temperature: float = 0.0
    ) -> None:
        self.template = template
        self.name = name
        self.max_tokens = max_tokens
        self.temperature = temperature

    def run(self, task_input: str, model: Any) -> str:
        prompt = render(self.template, input=task_input)
        return model.generate(prompt, max_tokens=self.max_tokens, temperature=self.temperature).text


class SelfConsistencyAgent:
    """Chain of thought sampled `n` times at `temperature`; the majority answer wins."""

    def __init__(
        self, n: int = 5, temperature: float = 0.7, max_tokens: int = DEFAULT_MAX_TOKENS, name: str = "cot-sc"
    ) -> None:
        self.n = n
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.name = name

    def run(self, task_input: str, model: Any) -> str:
        prompt = render("eval-cot", input=task_input)
        resp = model.generate(
            prompt, n=self.n, temperature=self.temperature, top_p=0.95, max_tokens=self.max_tokens
        )
        return majority(list(resp.texts))


@register_agent("direct", "answer only, one greedy call")
def direct(max_tokens: int = DEFAULT_MAX_TOKENS) -> Agent:
    return TemplateAgent("eval-direct", "direct", max_tokens=max_tokens)


class PassthroughAgent:
    """The task sent as it is, the reply returned as it is: evaluating a model that is itself an
    agent (`agentmeta serve`, any OpenAI-compatible endpoint answering tasks)."""

    name = "passthrough"

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.max_tokens = max_tokens

    def run(self, task_input: str, model: Any) -> str:
        return model.generate(task_input, max_tokens=self.max_tokens, temperature=0.0).text


@register_agent("passthrough", "the task as the only message, the reply as the answer (a served agent)")
def passthrough(max_tokens: int = DEFAULT_MAX_TOKENS) -> Agent:
    return PassthroughAgent(max_tokens=max_tokens)


@register_agent("cot", "think step by step, then answer; one greedy call")
def cot(max_tokens: int = DEFAULT_MAX_TOKENS) -> Agent:
    return TemplateAgent("eval-cot", "cot", max_tokens=max_tokens)


@register_agent("cot-sc", "chain of thought sampled 5 times (temperature 0.7), majority vote")
def cot_sc(n: int = 5, temperature: float = 0.7, max_tokens: int = DEFAULT_MAX_TOKENS) -> Agent:
    return SelfConsistencyAgent(n=n, temperature=temperature, max_tokens=max_tokens)
