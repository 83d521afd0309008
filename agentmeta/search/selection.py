"""What strategies select parents from: comparable scores and the score x cost front.

Scores are compared on the same samples only: a candidate's full-stage validation evaluation when
some candidate has one, subset evaluations only while none does (as `evolve.eligible_parents`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

OBJECTIVES = ("score", "pareto")
"""`score`: parents by validation score. `pareto`: parents from the score x tokens-per-sample front."""


def _stage(ctx: Any, ids: Sequence[str]) -> str:
    by_id = {c.id: c for c in ctx.candidates}
    return "full" if any(getattr(by_id.get(i), "fitness_stage", None) == "full" for i in ids) else "subset"


def comparable_evaluations(ctx: Any, ids: Sequence[str]) -> dict[str, Any]:
    """The complete validation evaluations {id: evaluation} of the candidates `ids` on the stage
    they can be compared on (full when any has a full-stage evaluation); candidates without one of
    that stage are left out."""
    if not ctx.suite:
        return {}
    stage = _stage(ctx, ids)
    out = {}
    for cid in ids:
        ev = ctx.archive.get_evaluation(cid, ctx.suite, "validation", stage)
        if ev is not None and not ev.incomplete:
            out[cid] = ev
    return out


def full_stage_scores(ctx: Any, ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-sample validation scores {id: {sample id: score}} of `comparable_evaluations`."""
    return {cid: ev.score_by_id() for cid, ev in comparable_evaluations(ctx, ids).items()}


def cost_points(ctx: Any, ids: Sequence[str]) -> list[tuple[str, float, float]]:
    """(id, validation score, tokens per sample) of the candidates `ids` on their comparable stage."""
    return [
        (cid, float(ev.mean), float(ev.tokens_per_sample))
        for cid, ev in comparable_evaluations(ctx, ids).items()
        if ev.mean is not None and ev.tokens_per_sample is not None
    ]


def cost_front(ctx: Any, ids: Sequence[str]) -> list[str]:
    """The ids on the score x tokens-per-sample Pareto front (`confirm.pareto_front`) among `ids`."""
    from agentmeta.search.confirm import pareto_front

    return pareto_front(cost_points(ctx, ids))


def best_seeds(ctx: Any, parse: Any = None) -> list[Any]:
    """The campaign's valid seeds with a full-stage score that `parse` reads (default: as graphs,
    `programs.graph_of`; `bayes` passes `programs.slots_or_none`), best first (what `bayes` and
    `tree` build on)."""
    from agentmeta.search.programs import graph_of

    parse = parse or graph_of
    seeds = [c for c in ctx.candidates if c.metadata.get("seed") and c.status == "ok" and parse(c) is not None]
    full = [c for c in seeds if c.fitness is not None and c.fitness_stage == "full"]
    return sorted(full, key=lambda c: -(c.fitness or 0.0))


def subset_score(ctx: Any, candidate: Any) -> float:
    """A candidate's subset-stage validation score (the same first samples for every candidate);
    0 for an invalid or failed candidate, or one without that evaluation."""
    if candidate is None or candidate.status != "ok":
        return 0.0
    ev = ctx.archive.get_evaluation(candidate.id, ctx.suite, "validation", "subset")
    return float(ev.mean or 0.0) if ev is not None else 0.0
