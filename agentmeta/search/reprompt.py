"""Reprompting: demonstrations found by Gibbs-style sampling over the train split (Xu et al., 2023,
"Reprompting: Automated Chain-of-Thought Prompt Inference Through Gibbs Sampling").

`bootstrap.bootstrap_slot` makes one draw: the agent's own outputs on train samples it solved. A
campaign with `SearchConfig.demos = "reprompt"` iterates that draw wherever demonstrations are made
(`bayes`'s demonstration sets, `prompt`'s bootstrap move, the `bootstrap_demos` operator):

1. **Start** from the one-draw set `S` (k recipes: solved train inputs with the slot's outputs).
2. **Score** `S` by the agent showing it on a fixed *scoring batch* of other train samples (never
   the recipes' own inputs): the number solved.
3. **Gibbs rounds**: for each position `i` of `S` in turn, a train sample outside `S` and the
   scoring batch is run by the agent showing the other recipes `S - {i}`; if it solves it, its
   output at the slot is a new recipe for position `i`, and the new set replaces `S` when it scores
   at least as well on the scoring batch (a recipe is kept when it helps solve *other* items, the
   paper's criterion, with a greedy acceptance instead of its temperature).

Train samples only, every run through `ProposalContext.evaluate`/`trace` (seeded, cached, its tokens
counted in the campaign's budget). The result records how many replacements were tried and kept
and the scoring batch's score before and after.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any

from agentmeta.agents.base import AgentSpec
from agentmeta.agents.kinds import set_slot
from agentmeta.search.bootstrap import demo_of, slot_targets  # bootstrap imports this module lazily
from agentmeta.search.operators import NotApplicable

ROUNDS = 2
"""Gibbs sweeps over the set's positions."""
SCORING = 4
"""Train samples each set is scored on."""


def _solved(ctx: Any, spec: AgentSpec, samples: list[Any]) -> tuple[float, dict[str, Any]]:
    """The number of `samples` the agent solves, and its records by sample id."""
    records = {r.id: r for r in ctx.evaluate(spec, samples).records}
    return sum(float(r.score) for r in records.values() if r.outcome == "scored"), records


def reprompt_slot(
    ctx: Any, spec: AgentSpec, index: int, rng: random.Random, start: AgentSpec, info: dict[str, Any], *,
    exclude: Collection[str] = (), rounds: int = ROUNDS, scoring: int = SCORING,
) -> tuple[AgentSpec, dict[str, Any]]:  # fmt: skip
    """Gibbs rounds (see the module) from `start`, the one-draw child of `spec` that `info`
    describes (`bootstrap_slot`'s result). Returns the final spec and `info` with a `reprompt`
    record. `NotApplicable` when the train split leaves no samples to score or to draw from."""
    slot = next(s for s in slot_targets(start) if s.index == index)
    recipes = [dict(d) for d in slot.demos]
    used = set(info.get("demos_from", []))
    free = [s for s in ctx.train_samples if s.id not in used and s.id not in set(exclude)]
    rng.shuffle(free)
    batch, draws = free[:scoring], free[scoring:]
    if not batch or not draws:
        raise NotApplicable("too few train samples for reprompting (a scoring batch and draws)")
    current = start
    best, _ = _solved(ctx, current, batch)
    before, tried, kept = best, 0, 0
    sources = list(info.get("demos_from", []))
    for _ in range(rounds):
        for i in range(len(recipes)):
            if not draws:
                break
            sample = draws.pop()
            others = recipes[:i] + recipes[i + 1 :]
            probe = set_slot(spec, index, demos=others) if others else spec
            score, records = _solved(ctx, probe, [sample])
            if score < 1.0:
                continue
            recipe = demo_of(ctx, probe, slot, sample, str(getattr(records[sample.id], "answer", "") or ""))
            if recipe is None or recipe in recipes:
                continue
            tried += 1
            trial = recipes[:i] + [recipe] + recipes[i + 1 :]
            candidate = set_slot(spec, index, demos=trial)
            score, _ = _solved(ctx, candidate, batch)
            if score >= best:
                recipes, current, best, kept = trial, candidate, score, kept + 1
                if i < len(sources):
                    sources[i] = sample.id
    record = {"rounds": rounds, "scoring": [s.id for s in batch], "tried": tried, "kept": kept,
              "score_before": before, "score_after": best}  # fmt: skip
    return current, {**info, "demos_from": sources, "reprompt": record}
