"""Promotion from the subset stage to the full stage (`SearchConfig.promote_margin`): the rules a
`Campaign` applies, kept here as a mixin so that the runner reads as the loop it is."""

from __future__ import annotations

from typing import Any


class PromotionRules:
    """Needs `archive`, `config`, `pending` and `_candidates()` (a `Campaign` has them)."""

    archive: Any
    config: Any
    pending: Any

    def _candidates(self) -> list[Any]:
        raise NotImplementedError

    def _best_subset(self, exclude: str) -> float | None:
        best = None
        for c in self._candidates():
            if c.id == exclude or c.id in self.pending:
                continue
            ev = self.archive.get_evaluation(c.id, self.config.suite, "validation", "subset")
            if ev is not None and ev.mean is not None and (best is None or ev.mean > best):
                best = ev.mean
        return best

    def promising(self, subset_mean: float | None, best: float | None) -> bool:
        """The fallback promotion rule, when no parent has a comparable subset evaluation: within
        `promote_margin` of the best subset score so far (see `SearchConfig.promote_margin`)."""
        if best is None:
            return True
        mean = subset_mean or 0.0
        if best > 0 and mean <= 0:
            return False  # solves nothing on the subset while another candidate does
        return mean >= best - self.config.promote_margin

    def _parent_subset(self, parent_ids: list[str]) -> tuple[str, Any] | None:
        """The first parent with a complete subset evaluation of this campaign's suite, and that evaluation."""
        for pid in parent_ids:
            ev = self.archive.get_evaluation(pid, self.config.suite, "validation", "subset")
            if ev is not None and not ev.incomplete and ev.score_by_id():
                return pid, ev
        return None

    def promotion(self, cid: str, sub: Any, parent_ids: list[str]) -> dict[str, Any]:
        """Whether a candidate goes from the subset stage to the full stage, and on what basis.

        Paired with its parent (see `SearchConfig.promote_margin`): both means are taken over the
        subset samples both scored, so the comparison is on the same samples. Without a comparable
        parent evaluation, the fallback rule `promising` (best subset score so far). `sub`: the
        candidate's subset `EvalResult` or stored `Evaluation`.
        """
        best = self._best_subset(exclude=cid)
        found = self._parent_subset(parent_ids)
        mine = sub.score_by_id()
        shared = [i for i in mine if found is not None and i in found[1].score_by_id()]
        if found is None or not shared:
            return {
                "promote": self.promising(sub.mean, best), "basis": "best", "mean": sub.mean,
                "best_subset": best,
            }  # fmt: skip
        pid, parent_ev = found
        theirs = parent_ev.score_by_id()
        mean = sum(mine[i] for i in shared) / len(shared)
        parent_mean = sum(theirs[i] for i in shared) / len(shared)
        promote = mean >= parent_mean - self.config.promote_margin - 1e-12
        if best is not None and best > 0 and mean <= 0:
            promote = False  # solves nothing on the subset while another candidate does
        return {
            "promote": promote, "basis": "parent", "mean": mean, "parent": pid, "parent_mean": parent_mean,
            "n": len(shared), "best_subset": best,
        }  # fmt: skip
