"""The adaptive-compute node types in the search: operators that make `bandit` and `tree_search`
nodes (`agentmeta.agents.adaptive`) and the train-split learning of a bandit's statistics.

- `add_bandit`: the graph's first unit (which reads the task alone) becomes a bandit over that
  unit's strategy and one or two other arms of `ARMS`, with empty statistics;
- `add_tree_search`: a chain-of-thought unit (one llm node) becomes a `tree_search` node with the
  same prompt, role, demonstrations and budget, 3 or 5 answers and a drawn verifier.

Both are registered in the operator group `adaptive`, drawn by `evolve`, `random` and `tree` only
in a campaign with `SearchConfig.adaptive` on (so campaigns without it draw what they always drew).
A child with a bandit whose statistics are empty has them learned before it is proposed
(`learn_bandits`): `LEARN_SAMPLES` train samples in batches, each sample given the arm the policy
picks from the statistics so far, the arm's graph run on it (`ProposalContext.evaluate`, the
suite's scorer as reward, an infrastructure failure not counted); the statistics are then frozen
in the spec. Only train samples are used, and the tokens are counted as the campaign's train runs.
"""

from __future__ import annotations

import random
from typing import Any

from agentmeta.agents.adaptive import ARMS, arm_spec, rank_arms
from agentmeta.agents.graph import GraphSpec, parse_spec
from agentmeta.search.canonical import _dump
from agentmeta.search.operators import (
    NotApplicable,
    OperatorContext,
    _build,
    _fresh,
    register_operator,
    unit_kind,
    units,
)
from agentmeta.search.programs import graph_spec

LEARN_SAMPLES = 16
"""Train samples a new bandit's statistics are learned on."""
LEARN_BATCH = 4
"""Samples per round of learning (each round's arms are picked from the statistics so far)."""
TREE_NS = (3, 5)
VERIFIERS = ("agreement", "self", "python")


def add_bandit(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Make the graph's first unit a bandit over its strategy and one or two other reasoning arms."""
    groups = units(spec)
    kind = unit_kind(groups[0])
    own = kind if kind in ARMS else "cot"
    others = [a for a in ARMS if a != own]
    arms = [own, *rng.sample(others, rng.choice((1, 2)))]
    first = groups[0][0]
    node = {
        "id": _fresh("bandit", {n.id for n in spec.nodes}), "type": "bandit", "arms": arms, "policy": rng.choice(("thompson", "ucb")),
        "pulls": rng.choice((1, 2)), "role": first.get("role", "helpful assistant"),
        "max_tokens": first.get("max_tokens", 160),
    }  # fmt: skip
    return _build(spec, [[node], *groups[1:]], ctx)


def add_tree_search(spec: GraphSpec, rng: random.Random, ctx: OperatorContext) -> GraphSpec:
    """Make a chain-of-thought unit (one llm node) a tree_search node: AB-MCTS over its answers."""
    groups = units(spec)
    targets = [i for i, g in enumerate(groups) if unit_kind(g) == "cot"]
    if not targets:
        raise NotApplicable("no chain-of-thought unit to search answers of")
    i = rng.choice(targets)
    node = {**groups[i][0], "type": "tree_search", "n": rng.choice(TREE_NS), "verifier": rng.choice(VERIFIERS)}
    return _build(spec, [*groups[:i], [node], *groups[i + 1 :]], ctx)


def learn_bandit(ctx: Any, graph: GraphSpec, index: int, rng: random.Random,
                 samples: int = LEARN_SAMPLES, batch: int = LEARN_BATCH) -> tuple[GraphSpec, dict[str, Any]]:  # fmt: skip
    """`graph` with bandit node `index`'s statistics learned on train samples (see the module).
    `NotApplicable` where the campaign runs nothing on train samples."""
    if ctx.evaluate is None or not ctx.train_samples:
        raise NotApplicable("the campaign runs no candidate on train samples")
    node = graph.nodes[index]
    picks = rng.sample(list(ctx.train_samples), min(samples, len(ctx.train_samples)))
    stats: dict[str, list[float]] = {a: [0.0, 0.0] for a in node.arms}
    for start in range(0, len(picks), batch):
        chosen: dict[str, list[Any]] = {}
        for sample in picks[start : start + batch]:
            arm = rank_arms(list(node.arms), stats, node.policy, rng)[0]
            chosen.setdefault(arm, []).append(sample)
        for arm, group in chosen.items():
            result = ctx.evaluate(graph_spec(arm_spec(arm, node), ctx.kind), group)
            for r in result.records:
                if r.outcome == "infra_error":
                    continue  # the infrastructure's failure is not the arm's
                stats[arm][0] += float(r.score)
                stats[arm][1] += 1.0
    nodes = _dump(graph)
    nodes[index] = {**nodes[index], "stats": {a: [round(v[0], 4), v[1]] for a, v in stats.items()}}
    learned = parse_spec({**graph.model_dump(mode="json"), "nodes": nodes})
    return learned, {"bandit": node.id, "learned_on": [s.id for s in picks], "stats": nodes[index]["stats"]}


def learn_bandits(ctx: Any, graph: GraphSpec, rng: random.Random) -> tuple[GraphSpec, dict[str, Any]]:
    """Learn the statistics of every bandit node of `graph` that has none (no change where the
    campaign runs nothing on train samples: such a bandit ranks its arms with no statistics, by
    Thompson draws from uniform priors or, under UCB, in the order of its arms)."""
    learned: list[dict[str, Any]] = []
    for i, node in enumerate(graph.nodes):
        if node.type == "bandit" and not node.stats and ctx.evaluate is not None and ctx.train_samples:
            graph, info = learn_bandit(ctx, graph, i, rng)
            learned.append(info)
    return graph, ({"bandits": learned} if learned else {})


register_operator("add_bandit", add_bandit, "adaptive")
register_operator("add_tree_search", add_tree_search, "adaptive")

__all__ = ["add_bandit", "add_tree_search", "learn_bandit", "learn_bandits"]
