"""The built-in search strategies, registered by name (`--strategy NAME`).

A strategy is registered as a factory `factory(config: SearchConfig) -> Strategy`; a plugin adds
one the same way::

    from agentmeta.registry import register

    @register("strategy", "my-search")
    def my_search(config):
        return MySearch(...)              # propose(ctx) -> Proposal, debug(...) -> Proposal | None
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentmeta.agents.kinds import searchable_kind
from agentmeta.registry import registry
from agentmeta.search.meta_agent import MetaAgentSearch

if TYPE_CHECKING:
    from agentmeta.search.campaign import SearchConfig
    from agentmeta.search.strategy import Strategy


@registry.register("strategy", "meta-agent", "Meta Agent Search (ADAS): archive in the prompt, reflexion, debug")
def meta_agent(config: SearchConfig) -> MetaAgentSearch:
    searchable_kind(config.kind)  # a kind the meta-agent cannot write fails before any work
    return MetaAgentSearch(reflexion_rounds=config.reflexion_rounds)


def get_strategy(name: str, config: SearchConfig) -> Strategy:
    """The strategy registered as `name`, built for `config` (`ConfigError` listing the names)."""
    factory: Any = registry.get("strategy", name)
    return factory(config)
