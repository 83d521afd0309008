"""The built-in search strategies, registered by name (`--strategy NAME`).

- `meta-agent`: Meta Agent Search (ADAS), any searchable kind.
- `evolve`: open-ended archive evolution of graph agents (DGM-style parent selection, the operator
  library of `agentmeta.search.operators`, crossover, some meta-agent rewrites).
- `prompt`: reflective instruction evolution in GEPA's manner (per-sample Pareto parents, the
  meta-model rewrites an instruction from train-minibatch feedback, kept only if it beats its
  parent on that minibatch, merges of lineages), any kind with slots.
- `random`: a random operator on a random candidate, no selection (the baseline).
- `bayes`: Optuna's TPE over a declared design space of the best seed's slot (bootstrapped
  demonstration sets, instruction, role, temperature, votes), fed by subset scores (MIPROv2's idea).

Each factory asks the campaign's kind for the capability it needs (`AgentKind.capabilities`:
`proposals`, `slots`, `operators`), never for a kind by name, so a plugin's kind with that capability
is searched like the built-in ones.
- `tree`: AB-MCTS (treequest) over the campaign's candidates: wider (a new child) or deeper (into a
  child), by a mutation or a refinement from train-split failures, chosen by Thompson sampling.

A strategy is registered as a factory `factory(config: SearchConfig) -> Strategy`; a plugin adds
one the same way::

    from agentmeta.registry import register

    @register("strategy", "my-search")
    def my_search(config):
        return MySearch(...)              # propose(ctx) -> Proposal, debug(...) -> Proposal | None
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentmeta.agents.kinds import require_capability
from agentmeta.registry import registry
from agentmeta.search.bayes import BayesSearch
from agentmeta.search.evolve import EvolveSearch
from agentmeta.search.meta_agent import MetaAgentSearch
from agentmeta.search.random_search import RandomSearch
from agentmeta.search.reflective import ReflectivePromptSearch
from agentmeta.search.tree import TreeSearch

if TYPE_CHECKING:
    from agentmeta.search.config import SearchConfig
    from agentmeta.search.strategy import Strategy


@registry.register(
    "strategy", "meta-agent", "Meta Agent Search (ADAS): archive in the prompt, reflexion, debug"
)
def meta_agent(config: SearchConfig) -> MetaAgentSearch:
    require_capability(config.kind, "proposals", "strategy 'meta-agent'")  # fails before any work
    return MetaAgentSearch(reflexion_rounds=config.reflexion_rounds)


def _graph_only(strategy: str, config: SearchConfig) -> None:
    require_capability(config.kind, "operators", f"strategy {strategy!r} (it mutates graphs)")


@registry.register(
    "strategy",
    "evolve",
    "archive evolution of graph agents: DGM parent selection, mutation operators, crossover",
)
def evolve(config: SearchConfig) -> EvolveSearch:
    _graph_only("evolve", config)
    return EvolveSearch(reflexion_rounds=config.reflexion_rounds)


@registry.register(
    "strategy", "random", "random search: a random graph operator on a random candidate (baseline)"
)
def random_search(config: SearchConfig) -> RandomSearch:
    _graph_only("random", config)
    return RandomSearch()


@registry.register(
    "strategy",
    "prompt",
    "reflective instruction evolution (GEPA-style): train-minibatch feedback, Pareto parents, merges",
)
def prompt_search(config: SearchConfig) -> ReflectivePromptSearch:
    require_capability(config.kind, "slots", "strategy 'prompt' (it rewrites instructions)")
    return ReflectivePromptSearch()


@registry.register(
    "strategy",
    "bayes",
    "TPE (Optuna) over bootstrapped demos, instruction, role and temperature of the best seed's slot",
)
def bayes_search(config: SearchConfig) -> BayesSearch:
    require_capability(config.kind, "slots", "strategy 'bayes' (it tunes instructions and demonstrations)")
    return BayesSearch(adaptive=config.adaptive)


@registry.register(
    "strategy",
    "tree",
    "AB-MCTS (treequest): wider or deeper, mutate or refine from train failures, by Thompson sampling",
)
def tree_search(config: SearchConfig) -> TreeSearch:
    _graph_only("tree", config)
    return TreeSearch()


def get_strategy(name: str, config: SearchConfig) -> Strategy:
    """The strategy registered as `name`, built for `config` (`ConfigError` listing the names)."""
    factory: Any = registry.get("strategy", name)
    return factory(config)
