"""The agent protocol the runner calls, and the built-in baseline agents.

An agent is any object with `run(task_input: str, model) -> str`; `model` is a `Model`-like
handle with `generate(...)`. Built-ins are registered by name (`direct`, `cot`, `cot-sc`) so a
result can name the agent it came from; later agent kinds (code, graph, prompt candidates) plug
in by implementing `run` or by `register_agent`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from agentmeta.errors import ConfigError
from agentmeta.eval.scorers import extract_answer, normalize_text, parse_number
from agentmeta.prompts import load_template, render  # noqa: F401 - load_template re-exported


@runtime_checkable
class Agent(Protocol):
    """Anything that answers a task with a model."""

    def run(self, task_input: str, model: Any) -> str: ...


AgentFactory = Callable[..., Agent]
_AGENTS: dict[str, AgentFactory] = {}
_DOCS: dict[str, str] = {}


def register_agent(name: str, doc: str = "") -> Callable[[AgentFactory], AgentFactory]:
    """Register an agent factory under `name` (keyword arguments configure it)."""

    def deco(factory: AgentFactory) -> AgentFactory:
        _AGENTS[name] = factory
        _DOCS[name] = doc
        return factory

    return deco


def list_agents() -> dict[str, str]:
    """Registered agent names with one line each."""
    return dict(sorted(_DOCS.items()))


class _CallableAgent:
    def __init__(self, fn: Callable[[str, Any], str]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", "agent")

    def run(self, task_input: str, model: Any) -> str:
        return self.fn(task_input, model)


def get_agent(agent: str | Agent | Callable[[str, Any], str], **kwargs: Any) -> tuple[Agent, str]:
    """The agent object and its display name, from a registered name, an `Agent` or a function."""
    if isinstance(agent, str):
        factory = _AGENTS.get(agent)
        if factory is not None:
            return factory(**kwargs), agent
        seed = _archive_agent(agent)
        if seed is not None:
            return seed, agent
        raise ConfigError(
            f"unknown agent {agent!r}; built-in agents: {', '.join(sorted(_AGENTS))}; seed agents: "
            f"{', '.join(_seed_names())}; or a .py/.yaml/.json agent file"
        )
    if isinstance(agent, Agent):
        return agent, str(getattr(agent, "name", type(agent).__name__))
    if callable(agent):
        wrapped = _CallableAgent(agent)
        return wrapped, wrapped.name
    raise ConfigError(
        f"agent must be a name, an object with run(task_input, model) or a function; "
        f"got {type(agent).__name__}"
    )


def _seed_names() -> list[str]:
    try:
        from agentmeta.agents import seed_names
    except ImportError:  # the agent system is not part of this build
        return []
    return seed_names()


def _archive_agent(name: str) -> Agent | None:
    """A seed agent of `archive/` (`code/self_refine`) or an agent file, built; None if neither."""
    from pathlib import Path

    try:
        from agentmeta.agents import find_seed, spec_from_file
    except ImportError:
        return None
    if name.endswith((".py", ".yaml", ".yml", ".json")) and Path(name).is_file():
        return spec_from_file(name).build()
    spec = find_seed(name)
    return spec.build() if spec is not None else None


# ----------------------------------------------------------------------------- prompt templates

DEFAULT_MAX_TOKENS = 256
"""Completion budget of the built-in agents (the runner's `max_tokens` caps it)."""


# ----------------------------------------------------------------------------- built-in agents


class PromptAgent:
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


def vote_key(answer: str) -> str:
    """What answers are grouped by in a vote: the number if the answer is one, else normalized text."""
    stripped = answer.strip().rstrip(".")
    num = parse_number(stripped) if re.fullmatch(r"[-+$]?[\d,]*\.?\d+(?:/\d+)?%?", stripped) else None
    return f"{num:g}" if num is not None else normalize_text(answer)


def majority(texts: list[str]) -> str:
    """The completion whose extracted answer is most common (ties: the earliest); empty answers don't vote."""
    keys = [vote_key(extract_answer(t)) for t in texts]
    counts = Counter(k for k in keys if k)
    if not counts:
        return texts[0] if texts else ""
    best = max(counts.values())
    winner = next(k for k in keys if k and counts[k] == best)
    return texts[keys.index(winner)]


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
    return PromptAgent("eval-direct", "direct", max_tokens=max_tokens)


@register_agent("cot", "think step by step, then answer; one greedy call")
def cot(max_tokens: int = DEFAULT_MAX_TOKENS) -> Agent:
    return PromptAgent("eval-cot", "cot", max_tokens=max_tokens)


@register_agent("cot-sc", "chain of thought sampled 5 times (temperature 0.7), majority vote")
def cot_sc(n: int = 5, temperature: float = 0.7, max_tokens: int = DEFAULT_MAX_TOKENS) -> Agent:
    return SelfConsistencyAgent(n=n, temperature=temperature, max_tokens=max_tokens)
