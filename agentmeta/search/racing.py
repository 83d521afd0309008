"""Racing: between the subset stage and the full stage, a promoted candidate is evaluated on
growing prefixes of the full-stage samples (the rungs of `SearchConfig.race`, e.g. 16 of 32) and
dropped at a rung as soon as the paired 95% interval of its difference with the incumbent (the
campaign's best full-stage candidate), on the samples both scored, lies below 0: successive
halving's early stop, decided by a paired test instead of a fixed fraction, so a bad candidate costs
a rung instead of the full stage and a good one is never dropped on a hunch.

A dropped candidate keeps what it was scored on (an evaluation of stage `race-<n>`, never primary:
its fitness stays its subset score, and it is not a full-stage candidate) and its metadata says
where it stopped, against whom and by how much (`metadata["race"]`). A resumed campaign finds the
stored rungs and decides the same way without evaluating anything again.
"""

from __future__ import annotations

from typing import Any

from agentmeta.eval.stats import paired_ci
from agentmeta.eval.types import EvalResult


def rungs(config: Any) -> list[int]:
    """The racing rungs that lie strictly between the subset and the full stage."""
    return [r for r in config.race if config.subset < r < config.full]


def race(camp: Any, cid: str, agent: Any, known: EvalResult | None) -> EvalResult | None | bool:
    """Run candidate `cid` through the rungs of `camp`'s config. Returns False if it was dropped,
    else the last rung's `EvalResult` (for the full stage to reuse; None when it came from the
    archive or there was no rung)."""
    suite = camp.config.suite
    if camp.archive.get_evaluation(cid, suite, "validation", "full") is not None:
        return None  # raced through before (a resumed campaign): the full stage is stored
    if (camp.archive.get(cid, with_evaluations=False).metadata.get("race") or {}).get("dropped_at"):
        return False  # dropped before: decided, never raced again
    incumbent = camp.best()
    for n in rungs(camp.config):
        res = camp._evaluate_stage(cid, agent, f"race-{n}", primary=False, known=known, samples=n)
        known = res if isinstance(res, EvalResult) else None
        if incumbent is None or incumbent.id == cid:
            continue
        best = camp.archive.get_evaluation(incumbent.id, suite, "validation", "full")
        theirs = best.score_by_id() if best is not None else {}
        mine = res.score_by_id()
        shared = [i for i in mine if i in theirs]
        if not shared:
            continue
        cmp = paired_ci([mine[i] for i in shared], [theirs[i] for i in shared], seed=camp.config.seed)
        if cmp.high < 0.0:
            decision = {
                "dropped_at": n, "vs": incumbent.id, "diff": cmp.mean_diff, "low": cmp.low, "high": cmp.high,
                "n": len(shared),
            }  # fmt: skip
            if camp.archive.get(cid, with_evaluations=False).metadata.get("race") != decision:
                camp.archive.update_metadata(cid, race=decision)
            camp.progress({"event": "dropped", "id": cid, **decision})
            return False
    return known
