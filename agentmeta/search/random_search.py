"""Random search over the graph operator library (the `random` strategy): the baseline.

Each iteration applies a uniformly drawn registered operator (`agentmeta.search.operators`; crossovers
included, with a second parent drawn uniformly; `bootstrap_demos` too, as in `evolve`) to a uniformly drawn valid candidate of the
campaign (seeds included; the seed files while none is valid). No fitness is looked at: any
strategy that selects should beat it at the same budget. Duplicates are rejected as in `evolve`,
and the draws are seeded by the campaign's seed and the iteration.
"""

from __future__ import annotations

import random

from agentmeta.search.evolve import OperatorSearch, Parent, graph_of, mutations
from agentmeta.search.operators import operator_names
from agentmeta.search.strategy import ProposalContext


class RandomSearch(OperatorSearch):
    """A random operator on a random candidate, no selection."""

    name = "random"

    def parents(self, ctx: ProposalContext) -> list[Parent]:
        out = []
        for c in ctx.candidates:
            graph = graph_of(c) if c.status == "ok" else None
            if graph is not None:
                out.append(Parent(graph, c.id, c.name, c))
        return out

    def choose(
        self, pool: list[Parent], ctx: ProposalContext, rng: random.Random
    ) -> tuple[str, Parent, Parent | None]:
        parent = rng.choice(pool)
        crossovers = operator_names("crossover") if len(pool) > 1 else []
        op = rng.choice(mutations(ctx) + crossovers)
        if op in crossovers:
            return op, parent, rng.choice([p for p in pool if p is not parent])
        return op, parent, None
