"""Two candidates compared sample by sample on an evaluation they share: which samples differ,
wins, losses and ties, and the paired bootstrap CI of the difference of their means."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from agentmeta.archive.records import Candidate, Evaluation
from agentmeta.errors import ArchiveError

if TYPE_CHECKING:
    from agentmeta.archive.store import Archive


class SampleDiff(BaseModel):
    """One sample on which two candidates scored differently."""

    sample_id: str
    """Id of the sample inside its suite."""
    score_a: float
    """A's score."""
    score_b: float
    """B's score."""
    answer_a: str | None = None
    """A's stored answer (None if it failed or was stored before answers were kept)."""
    answer_b: str | None = None
    """B's stored answer."""
    error_a: str | None = None
    """Why A failed on this sample, if it did."""
    error_b: str | None = None
    """Why B failed on this sample, if it did."""


class CandidateDiff(BaseModel):
    """Candidate A against candidate B on one evaluation (suite, split, stage) they share."""

    a: str
    """Id of candidate A."""
    b: str
    """Id of candidate B."""
    name_a: str = ""
    """Name of A."""
    name_b: str = ""
    """Name of B."""
    suite: str
    """Suite of the evaluation compared."""
    split: str
    """Its split."""
    stage: str
    """Its stage."""
    shared: int = 1
    """How many evaluations (suite, split, stage) the two candidates share in all."""
    note: str | None = None
    """How the evaluation was picked when several were shared and none was chosen."""
    n: int = 0
    """Samples compared: scored (or failed by the agent) on both sides."""
    wins: int = 0
    """Samples where A scored higher than B."""
    losses: int = 0
    """Samples where A scored lower than B."""
    ties: int = 0
    """Samples where they scored the same."""
    mean_a: float | None = None
    """A's mean over the samples compared."""
    mean_b: float | None = None
    """B's mean over the samples compared."""
    mean_diff: float | None = None
    """Mean of A - B over the samples compared (None if there are none)."""
    ci_low: float | None = None
    """Lower end of the paired bootstrap CI of `mean_diff`."""
    ci_high: float | None = None
    """Upper end of the paired bootstrap CI of `mean_diff`."""
    p_better: float | None = None
    """Share of bootstrap resamples in which A's mean beats B's (ties count half)."""
    confidence: float = 0.95
    """Coverage of the CI."""
    left_out: int = 0
    """Samples of either evaluation not compared: `only_a + only_b + infra`."""
    only_a: int = 0
    """Samples only A's evaluation has."""
    only_b: int = 0
    """Samples only B's evaluation has."""
    infra: int = 0
    """Samples both have, left out because either side lost it to an infrastructure error."""
    incomplete_a: bool = False
    """A's evaluation is incomplete (too many infrastructure errors)."""
    incomplete_b: bool = False
    """B's evaluation is incomplete."""
    samples: list[SampleDiff] = Field(default_factory=list)
    """The compared samples whose scores differ, in A's sample order."""


_Key = tuple[str, str, str]


def _preference(key: _Key, a: Candidate, b: Candidate, n: int) -> tuple:
    """Sort key (highest wins) of a shared evaluation: not test, then the full stage, then the
    primary one (behind either's fitness), then validation, then more samples."""
    suite, split, stage = key
    primary = any(c.fitness_suite == suite and c.fitness_stage == stage for c in (a, b))
    return (split != "test", stage == "full", primary, split == "validation", n)


def _describe(key: _Key) -> str:
    return f"{key[0]} {key[1]}/{key[2]}"


def _pick(
    a: Candidate, b: Candidate, suite: str | None, split: str | None, stage: str | None
) -> tuple[Evaluation, Evaluation, int, str | None]:
    evs_a = {(e.suite, e.split, e.stage): e for e in a.evaluations}
    evs_b = {(e.suite, e.split, e.stage): e for e in b.evaluations}
    keys = [
        k
        for k in evs_a
        if k in evs_b
        and (suite is None or k[0] == suite)
        and (split is None or k[1] == split)
        and (stage is None or k[2] == stage)
    ]
    if not keys:
        asked = ", ".join(
            f"{what} {v}"
            for what, v in (("suite", suite), ("split", split), ("stage", stage))
            if v is not None
        )

        def have(evs: dict[_Key, Evaluation]) -> str:
            shown = "; ".join(_describe(k) for k in list(evs)[:4]) or "no evaluation"
            return shown + ("; ..." if len(evs) > 4 else "")

        raise ArchiveError(
            f"candidates {a.id} and {b.id} share no evaluation{f' with {asked}' if asked else ''} "
            f"(A has: {have(evs_a)}; B has: {have(evs_b)}); evaluate both on the same suite, split and stage"
        )
    if len(keys) == 1:
        key, note = keys[0], None
    else:
        key = max(keys, key=lambda k: _preference(k, a, b, min(len(evs_a[k].scores), len(evs_b[k].scores))))
        note = (
            f"compared on {_describe(key)}, picked out of {len(keys)} shared evaluations "
            f"({'; '.join(_describe(k) for k in keys if k != key)[:200]}); "
            "choose with --suite/--split/--stage"
        )
    return evs_a[key], evs_b[key], len(keys), note


def diff_candidates(
    archive: Archive,
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
    """See `Archive.diff`."""
    ca, cb = archive.get(a), archive.get(b)
    ea, eb, shared, note = _pick(ca, cb, suite, split, stage)
    by_a = {s.sample_id: s for s in ea.scores}
    by_b = {s.sample_id: s for s in eb.scores}
    both = [i for i in by_a if i in by_b]
    paired = [i for i in both if by_a[i].counted and by_b[i].counted]
    sa = [by_a[i].score for i in paired]
    sb = [by_b[i].score for i in paired]
    out = CandidateDiff(
        a=ca.id, b=cb.id, name_a=ca.name, name_b=cb.name, suite=ea.suite, split=ea.split, stage=ea.stage,
        shared=shared, note=note, n=len(paired), confidence=confidence,
        only_a=len(by_a) - len(both), only_b=len(by_b) - len(both), infra=len(both) - len(paired),
        incomplete_a=ea.incomplete, incomplete_b=eb.incomplete,
    )  # fmt: skip
    out.left_out = out.only_a + out.only_b + out.infra
    out.wins = sum(x > y for x, y in zip(sa, sb, strict=True))
    out.losses = sum(x < y for x, y in zip(sa, sb, strict=True))
    out.ties = len(paired) - out.wins - out.losses
    out.samples = [
        SampleDiff(
            sample_id=i,
            score_a=by_a[i].score,
            score_b=by_b[i].score,
            answer_a=by_a[i].answer,
            answer_b=by_b[i].answer,
            error_a=by_a[i].error,
            error_b=by_b[i].error,
        )  # fmt: skip
        for i in paired
        if by_a[i].score != by_b[i].score
    ]
    if paired:
        from agentmeta.eval.stats import paired_ci

        cmp = paired_ci(sa, sb, confidence=confidence, n_boot=n_boot, seed=seed)
        out.mean_a, out.mean_b = sum(sa) / len(sa), sum(sb) / len(sb)
        out.mean_diff, out.ci_low, out.ci_high, out.p_better = cmp.mean_diff, cmp.low, cmp.high, cmp.p_better
    return out
