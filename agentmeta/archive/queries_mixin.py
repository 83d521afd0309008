"""The archive's read-only questions, as `Archive` methods: the leaderboard, paired differences,
lineage, children, and the summary a meta-agent reads (implemented in `queries` and `diff`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from agentmeta.archive import schema as t
from agentmeta.archive.records import LeaderboardEntry, Lineage

if TYPE_CHECKING:
    from agentmeta.archive.diff import CandidateDiff


class QueriesMixin:
    """Needs `_read()` and `candidates()` (an `Archive` has them)."""

    _read: Any
    candidates: Any

    def leaderboard(
        self,
        suite: str | None = None,
        limit: int | None = None,
        campaign: str | None = None,
        *,
        split: str | None = None,
        stage: str | None = None,
        kind: str | Iterable[str] | None = None,
        include_unscored: bool = False,
        include_incomplete: bool = False,
    ) -> list[LeaderboardEntry]:
        """Candidates by fitness (mean) then CI low bound, best first.

        With `suite`, rank by each candidate's evaluation on that suite (a full-stage one before a
        `subset` one, then the one with the most samples; test split only if `split="test"` is
        asked); without, by the candidate's fitness. Scores of different stages are not
        comparable: a candidate scored on the cheap `subset` stage only is listed after every
        candidate scored on another stage, never above one (`subset_only=True`). Each entry
        carries the tokens per sample of the evaluation it shows (`tokens_per_sample`, and
        `completion_tokens_per_sample`; calls served by the call cache count 0).
        An incomplete evaluation (too many infrastructure errors) never ranks: candidates that
        have only such an evaluation are left out, or, with `include_incomplete` (or
        `include_unscored`), listed after every ranked one with `incomplete=True` and no fitness.
        """
        from agentmeta.archive.queries import leaderboard

        return leaderboard(
            self, suite=suite, limit=limit, campaign=campaign, split=split, stage=stage, kind=kind,
            include_unscored=include_unscored, include_incomplete=include_incomplete,
        )  # fmt: skip

    def diff(
        self,
        a: str,
        b: str,
        *,
        suite: str | None = None,
        split: str | None = None,
        stage: str | None = None,
        confidence: float = 0.95,
        n_boot: int = 10_000,
        seed: int = 0,
    ) -> CandidateDiff:
        """Compare candidates `a` and `b` (ids or unique prefixes) sample by sample on an
        evaluation they share (same suite, split and stage).

        With several shared evaluations and no choice made, the full-stage one (then the primary
        one, then validation) is picked, and `CandidateDiff.note` says which. Returns the samples whose scores differ, the
        wins/losses/ties of A and the paired bootstrap CI of A - B over the samples both scored
        (infrastructure errors and samples only one side has are left out and counted). Raises
        `ArchiveError` if they share no evaluation.
        """
        from agentmeta.archive.diff import diff_candidates

        return diff_candidates(
            self, a, b, suite=suite, split=split, stage=stage, confidence=confidence, n_boot=n_boot, seed=seed
        )

    def lineage(self, candidate_id: str) -> Lineage:
        """Ancestors (nearest first) and direct children of a candidate."""
        from agentmeta.archive.queries import lineage

        return lineage(self, candidate_id)

    def children_count(self, candidate_id: str) -> int:
        """How many candidates name this one as a parent."""
        with self._read() as conn:  # type: ignore[attr-defined]
            q = select(func.count()).select_from(t.parents).where(t.parents.c.parent_id == candidate_id)
            return int(conn.execute(q).scalar_one())

    def children_counts(self, campaign: str | None = None) -> dict[str, int]:
        """Children per candidate id (0 included), optionally for one campaign's candidates."""
        ids = [c.id for c in self.candidates(campaign=campaign)]
        with self._read() as conn:
            q = select(t.parents.c.parent_id, func.count()).group_by(t.parents.c.parent_id)
            counts = {str(p): int(n) for p, n in conn.execute(q).all()}
        return {i: counts.get(i, 0) for i in ids}

    def summary_for_prompt(
        self,
        *,
        campaign: str | None = None,
        suite: str | None = None,
        limit: int = 20,
        order: str = "fitness",
        include_source: bool = False,
        include_failed: int = 0,
        max_thought_chars: int = 300,
    ) -> str:
        """A compact text list of archive entries (name, thought, fitness, CI) for a meta-agent prompt."""
        from agentmeta.archive.queries import summary_for_prompt

        return summary_for_prompt(
            self, campaign=campaign, suite=suite, limit=limit, order=order, include_source=include_source,
            include_failed=include_failed, max_thought_chars=max_thought_chars,
        )  # fmt: skip
