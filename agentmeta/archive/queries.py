"""Read-only queries over an archive: leaderboard, lineage, the meta-agent's summary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import select

from agentmeta.archive import schema as t
from agentmeta.archive.records import (
    FITNESS_INFRA_KEY,
    PRELIMINARY_STAGES,
    Candidate,
    LeaderboardEntry,
    Lineage,
    per_sample,
)
from agentmeta.errors import ArchiveError
from agentmeta.models.types import Usage

if TYPE_CHECKING:
    from agentmeta.archive.store import Archive


def _rank_key(fitness: float | None, ci_low: float | None, created: object, cid: str) -> tuple:
    # Best first: fitness, then CI low bound (None ranks below any number), then oldest, then id.
    return (
        -(fitness if fitness is not None else float("-inf")),
        -(ci_low if ci_low is not None else float("-inf")),
        created,
        cid,
    )


class _Row(NamedTuple):
    cand: Candidate
    fitness: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    suite: str | None
    stage: str | None
    n_infra: int = 0
    incomplete: bool = False
    tokens: tuple[float | None, float | None] = (None, None)

    @property
    def subset_only(self) -> bool:
        return self.fitness is not None and not self.incomplete and self.stage in PRELIMINARY_STAGES

    def key(self) -> tuple:
        # Ranked rows first (a full-stage score before any subset-only one: scores of different
        # stages are not comparable), then incomplete ones (never above a real score), then unscored.
        if self.incomplete:
            group = 2
        elif self.fitness is None:
            group = 3
        else:
            group = 1 if self.subset_only else 0
        return (group, *_rank_key(self.fitness, self.ci_low, self.cand.created_at, self.cand.id))


def _tokens(usage: dict | None, n: int | None, n_infra: int) -> tuple[float | None, float | None]:
    """(prompt + completion, completion) tokens per sample run of an evaluation row."""
    u = Usage.model_validate(usage or {})
    samples = (n or 0) + n_infra
    total = per_sample(u.prompt_tokens + u.completion_tokens, samples)
    return total, per_sample(u.completion_tokens, samples)


def _fitness_tokens(archive: Archive, cands: dict[str, Candidate]) -> dict[str, tuple]:
    """Tokens per sample of the evaluation behind each candidate's fitness (same suite and stage,
    not the test split; the one whose mean and n are the fitness's, else the latest)."""
    e = t.evaluations.c
    q = select(e.candidate_id, e.suite, e.stage, e.mean, e.n, e.usage, e.n_infra, e.created_at)
    q = q.where(e.split != "test")
    if len(cands) <= 500:  # a campaign's or a kind's: read only theirs
        q = q.where(e.candidate_id.in_(list(cands)))
    best: dict[str, tuple] = {}
    with archive._read() as conn:
        for cid, suite, stage, mean, n, usage, n_infra, created in conn.execute(q).all():
            c = cands.get(cid)
            if c is None or (suite, stage) != (c.fitness_suite, c.fitness_stage):
                continue
            rank = (mean == c.fitness and n == c.n, created)
            if cid not in best or rank > best[cid][0]:
                best[cid] = (rank, _tokens(usage, n, n_infra))
    return {cid: tok for cid, (_, tok) in best.items()}


def leaderboard(
    archive: Archive,
    *,
    suite: str | None,
    limit: int | None,
    campaign: str | None,
    split: str | None,
    stage: str | None,
    kind: str | Iterable[str] | None,
    include_unscored: bool,
    include_incomplete: bool = False,
) -> list[LeaderboardEntry]:
    if limit is not None and limit < 1:
        raise ArchiveError(f"leaderboard limit must be at least 1, got {limit}")
    cands = {c.id: c for c in archive.candidates(campaign=campaign, kind=kind)}
    show_incomplete = include_incomplete or include_unscored
    rows: list[_Row] = []
    if suite is None:
        tokens = _fitness_tokens(archive, {i: c for i, c in cands.items() if c.fitness is not None})
        for c in cands.values():
            if c.incomplete:  # its fitness was cleared; never ranked
                if show_incomplete:
                    info = c.metadata.get(FITNESS_INFRA_KEY) or {}
                    n = info.get("n") if isinstance(info.get("n"), int) else None
                    rows.append(
                        _Row(c, None, None, None, n, c.fitness_suite, c.fitness_stage, c.n_infra, True)
                    )
            elif c.fitness is not None or include_unscored:
                rows.append(
                    _Row(
                        c,
                        c.fitness,
                        c.ci_low,
                        c.ci_high,
                        c.n,
                        c.fitness_suite,
                        c.fitness_stage,
                        c.n_infra,
                        tokens=tokens.get(c.id, (None, None)),
                    )
                )
    else:
        best: dict[str, tuple] = {}
        lost: dict[str, tuple] = {}
        e = t.evaluations.c
        q = select(
            e.candidate_id, e.mean, e.ci_low, e.ci_high, e.n, e.stage, e.created_at, e.usage, e.n_infra,
            e.incomplete,
        )  # fmt: skip
        q = q.where(e.suite == suite)
        q = q.where(e.split == split) if split is not None else q.where(e.split != "test")
        if stage is not None:
            q = q.where(e.stage == stage)
        with archive._read() as conn:
            for cid, mean, lo, hi, n, stg, created, usage, n_infra, incomplete in conn.execute(q).all():
                if cid not in cands or (mean is None and not incomplete):
                    continue
                into = lost if incomplete else best
                prev = into.get(cid)
                # The evaluation that speaks for the candidate: a full-stage one before a cheap
                # first stage's, then the one with the most samples; ties: the latest.
                rank = (stg not in PRELIMINARY_STAGES, n, created)
                if prev is None or rank > prev[0]:
                    into[cid] = (rank, (mean, lo, hi, n, stg, n_infra, _tokens(usage, n, n_infra)))
        for cid, c in cands.items():
            if cid in best:
                mean, lo, hi, n, stg, n_infra, tok = best[cid][1]
                rows.append(_Row(c, mean, lo, hi, n, suite, stg, n_infra, tokens=tok))
            elif cid in lost and show_incomplete:
                _, _, _, n, stg, n_infra, _ = lost[cid][1]
                rows.append(_Row(c, None, None, None, n, suite, stg, n_infra, True))
            elif include_unscored:
                rows.append(_Row(c, None, None, None, None, None, None))
    rows.sort(key=_Row.key)
    if limit is not None:
        rows = rows[:limit]
    return [
        LeaderboardEntry(
            rank=i + 1,
            id=r.cand.id,
            name=r.cand.name,
            kind=r.cand.kind,
            fitness=r.fitness,
            ci_low=r.ci_low,
            ci_high=r.ci_high,
            n=r.n,
            suite=r.suite,
            stage=r.stage,
            status=r.cand.status,
            generation=r.cand.generation,
            parent_ids=r.cand.parent_ids,
            campaign=r.cand.campaign,
            n_infra=r.n_infra,
            incomplete=r.incomplete,
            subset_only=r.subset_only,
            tokens_per_sample=r.tokens[0],
            completion_tokens_per_sample=r.tokens[1],
        )
        for i, r in enumerate(rows)
    ]


def lineage(archive: Archive, candidate_id: str) -> Lineage:
    cid = archive.resolve_id(candidate_id)
    with archive._read() as conn:
        depth: dict[str, int] = {}
        found: dict[str, Candidate] = {}
        frontier = [cid]
        level = 0
        while frontier:
            level += 1
            rows = conn.execute(
                select(t.candidates.c.id, t.candidates.c.parent_ids).where(t.candidates.c.id.in_(frontier))
            )
            nxt: list[str] = []
            parents_of = {str(i): pids or [] for i, pids in rows.all()}
            for child in frontier:  # discovery order: nearest first, then parent order
                for p in parents_of.get(child, []):
                    if p != cid and p not in depth:
                        depth[p] = level
                        nxt.append(p)
            frontier = nxt
        if depth:
            q = select(t.candidates).where(t.candidates.c.id.in_(list(depth)))
            for r in conn.execute(q).mappings().all():
                found[r["id"]] = archive._candidate(r)
        q = (
            select(t.candidates)
            .join(t.parents, t.parents.c.child_id == t.candidates.c.id)
            .where(t.parents.c.parent_id == cid)
            .order_by(t.candidates.c.created_at, t.candidates.c.id)
        )
        children = [archive._candidate(r) for r in conn.execute(q).mappings().all()]
    ancestors = [found[i] for i in depth if i in found]
    return Lineage(
        id=cid, ancestors=ancestors, depth={c.id: depth[c.id] for c in ancestors}, children=children
    )


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 3)].rstrip() + "..."


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:.3f}"


def summary_for_prompt(
    archive: Archive,
    *,
    campaign: str | None,
    suite: str | None,
    limit: int,
    order: str,
    include_source: bool,
    include_failed: int,
    max_thought_chars: int,
) -> str:
    if order not in ("fitness", "generation"):
        raise ArchiveError(f"summary order must be 'fitness' or 'generation', got {order!r}")
    if limit < 1:
        raise ArchiveError(f"summary limit must be at least 1, got {limit}")
    board = [e for e in archive.leaderboard(suite, None, campaign) if e.status == "ok"][:limit]
    if order == "generation":
        position = {c.id: i for i, c in enumerate(archive.candidates(campaign=campaign))}
        board.sort(key=lambda e: (e.generation, position.get(e.id, 0)))
    by_id = {c.id: c for c in archive.candidates(campaign=campaign, status=["ok", "invalid", "error"])}
    lines: list[str] = []
    for i, e in enumerate(board, 1):
        c = by_id[e.id]
        ci = f", 95% CI [{_fmt(e.ci_low)}, {_fmt(e.ci_high)}]" if e.ci_low is not None else ""
        n = f", n={e.n}" if e.n else ""
        n += " (subset stage only)" if e.subset_only else ""
        lines.append(
            f"[{i}] {c.name} (id {c.id}, {c.kind}, gen {c.generation}): fitness {_fmt(e.fitness)}{ci}{n}"
        )
        if c.thought:
            lines.append(f"    thought: {_short(c.thought, max_thought_chars)}")
        if include_source and c.source:
            lines.append("    source:")
            lines.extend("      " + line for line in c.source.rstrip().splitlines())
    if include_failed > 0:
        failed = [c for c in by_id.values() if c.status in ("invalid", "error")][-include_failed:]
        if failed:
            lines.append("Recent failures:")
            for c in failed:
                lines.append(
                    f"- {c.name} (id {c.id}, {c.status}): {_short(c.error or 'no message', max_thought_chars)}"
                )
    return "\n".join(lines)
