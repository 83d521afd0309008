"""Adaptive tree search over graph agents (the `tree` strategy): AB-MCTS ("Wider or Deeper?",
Sakana AI's `treequest`, algorithm AB-MCTS-A) decides at each iteration which node of the search
tree to expand and how.

The tree's root is the campaign's best seed (by full-stage validation score); every other node is a
candidate of the campaign. Expanding a node makes one child by one of two actions:

- `mutate`: a seeded random operator of the library (`agentmeta.search.operators`, plus
  `bootstrap_demos` where the campaign runs train samples) on the node's graph;
- `refine`: the node's graph runs on a minibatch of train samples (`ProposalContext.evaluate`), and
  the ones it failed are shown, with their reference answers (train targets only), as chat-turn
  demonstrations on its task node; a node that fails none is mutated instead.

AB-MCTS-A chooses between going wider (a new child of a node) and deeper (into an existing child)
by Thompson sampling over the scores the children got, and between the actions the same way; a
child's score is its subset-stage validation score (the same first validation samples for every
candidate; an invalid child counts 0). treequest keeps its state in memory only, and its sampling
uses numpy's global generator: at every proposal the strategy replays the campaign's earlier
iterations (each ask under a seed derived from the campaign seed and the iteration, each told the
archived child and score), so a resumed campaign rebuilds the same tree; numpy's global state is
restored afterwards. A child whose graph the campaign already has is never proposed: another
operator draw is tried.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

from agentmeta.agents.adaptive import _NP_LOCK
from agentmeta.agents.base import AgentSpec
from agentmeta.agents.graph import GraphSpec
from agentmeta.errors import require
from agentmeta.search.adaptive import learn_bandits
from agentmeta.search.bootstrap import BOOTSTRAP, REPROMPT, bootstrap_demos, bootstrap_targets
from agentmeta.search.evolve import graph_of, mutations
from agentmeta.search.operators import NotApplicable, OperatorContext, add_demos, apply, canonical
from agentmeta.search.selection import best_seeds, subset_score
from agentmeta.search.strategy import NoNewCandidateError, Proposal, ProposalContext

ACTIONS = ["mutate", "refine"]
REFINE_BATCH = 4
"""Train samples a `refine` runs the node on."""


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "big")


class TreeSearch:
    """AB-MCTS-A over the campaign's candidates (see the module)."""

    name = "tree"

    def __init__(self, max_tries: int = 12) -> None:
        self.max_tries = max_tries

    @staticmethod
    def _root(ctx: ProposalContext) -> Any:
        seeds = best_seeds(ctx)
        if not seeds:
            raise NoNewCandidateError("no seed graph has a full-stage score to grow the tree from")
        return seeds[0]

    def _tree(self, ctx: ProposalContext) -> tuple[Any, Any, Any]:
        """(algorithm, state, trial of this iteration), replaying every earlier iteration."""
        import numpy as np

        treequest = require("treequest", "pip install 'agentmeta[tree]'", "the tree strategy's treequest")
        algo = treequest.ABMCTSA()
        state = algo.init_tree()
        by_iteration = {
            c.metadata.get("iteration"): c
            for c in ctx.candidates
            if c.generation > 0 and "iteration" in c.metadata
        }
        _NP_LOCK.acquire()  # the tree_search node swaps numpy's global state under the same lock
        saved = np.random.get_state()
        try:
            for i in range(ctx.iteration + 1):
                np.random.seed(_seed(ctx.seed, "tree", i) % 2**32)
                state, trial = algo.ask(state, ACTIONS)
                if i == ctx.iteration:
                    return algo, state, trial
                child = by_iteration.get(i)
                score = subset_score(ctx, child)
                state = algo.tell(state, trial.trial_id, (child.id if child is not None else "", score))
        finally:
            np.random.set_state(saved)
            _NP_LOCK.release()
        raise AssertionError("unreachable")

    def _refine(self, ctx: ProposalContext, graph: GraphSpec, rng: random.Random) -> GraphSpec:
        if ctx.evaluate is None or not ctx.train_samples:
            raise NotApplicable("the campaign runs no candidate on train samples")
        picks = rng.sample(list(ctx.train_samples), min(REFINE_BATCH, len(ctx.train_samples)))
        spec = AgentSpec(kind=ctx.kind, name=graph.name, source=graph.model_dump_json(exclude_defaults=True))
        result = ctx.evaluate(spec, picks)
        failed_ids = {r.id for r in result.records if r.outcome != "infra_error" and r.score < 1.0}
        failed = [s for s in picks if s.id in failed_ids]
        if not failed:
            raise NotApplicable("the node solved its train minibatch: nothing to refine from")
        return add_demos(graph, rng, OperatorContext(train_samples=failed))

    def _mutate(self, ctx: ProposalContext, graph: GraphSpec, rng: random.Random) -> tuple[GraphSpec, str]:
        op = rng.choice(mutations(ctx))
        if op in (BOOTSTRAP, REPROMPT):
            targets = bootstrap_targets(graph)
            if not targets:
                raise NotApplicable("no node takes bootstrapped demonstrations")
            return bootstrap_demos(ctx, graph, rng.choice(targets), rng)[0], op
        octx = OperatorContext(
            train_samples=ctx.train_samples, models=tuple(ctx.models), task_model=ctx.task_model
        )
        return apply(op, graph, rng, octx), op

    def propose(self, ctx: ProposalContext) -> Proposal:
        root = self._root(ctx)
        _, _, trial = self._tree(ctx)
        parent = root
        if trial.parent_state:
            parent = next((c for c in ctx.candidates if c.id == trial.parent_state), root)
        graph = graph_of(parent)
        if graph is None:
            graph, parent = graph_of(root), root
        assert graph is not None
        known = {canonical(g) for g in (graph_of(c) for c in ctx.candidates) if g is not None}
        rng = random.Random(_seed(ctx.seed, "tree-child", ctx.iteration))
        for attempt in range(self.max_tries):
            action = trial.action if attempt == 0 else "mutate"
            try:
                if action == "refine":
                    child, how = self._refine(ctx, graph, rng), "refine (train failures as demonstrations)"
                else:
                    child, how = self._mutate(ctx, graph, rng)
            except NotApplicable:
                continue
            if canonical(child) in known:
                continue
            child = learn_bandits(ctx, child, rng)[0]  # only for a child that is new
            deeper = "deeper" if trial.parent_state else "wider"
            name = f"{how.split(' ')[0]} of {parent.name}"[:200]
            spec = AgentSpec(
                kind=ctx.kind, name=name, thought=f"tree: {deeper}, {how} of {parent.name} ({parent.id})",
                source=child.model_copy(update={"name": name}).model_dump_json(indent=2, exclude_defaults=True),
            )  # fmt: skip
            params = {"action": trial.action, "node": trial.node_to_expand, "expanded": parent.id}
            return Proposal(spec=spec, parent_ids=[parent.id], raw={"params": params, "operators": [how]})
        raise NoNewCandidateError(f"no new child of {parent.name} in {self.max_tries} tries")

    def debug(self, ctx: ProposalContext, proposal: Proposal, error: str, attempt: int) -> Proposal | None:
        return None
