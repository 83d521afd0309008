"""What the UI and the report show, read from an archive: plain data for the templates.

Nothing here formats HTML except the SVG plots (`agentmeta.ui.svg`), which escape every text
they draw; the templates autoescape the rest.
"""

from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from agentmeta.archive import Archive, Campaign, Candidate, Evaluation
from agentmeta.errors import AgentMetaError
from agentmeta.ui import svg

log = logging.getLogger(__name__)


@dataclass
class Links:
    """How pages link to each other: URLs in the web app, in-page anchors in the report."""

    report: bool = False

    def campaign(self, cid: str) -> str:
        return f"#campaign-{cid}" if self.report else f"/campaign/{cid}"

    def candidate(self, cid: str) -> str:
        return f"#c-{cid}" if self.report else f"/candidate/{cid}"

    def compare(self, a: str, b: str, split: str | None = None, stage: str | None = None) -> str:
        if self.report:
            return f"#cmp-{a}-{b}"
        extra = "".join(f"&{k}={quote(v)}" for k, v in (("split", split), ("stage", stage)) if v)
        return f"/compare?a={quote(a)}&b={quote(b)}{extra}"


def shown_location(archive: Archive) -> str:
    """The archive's location as shown: relative to the working directory when it lies under it."""
    from pathlib import Path

    try:
        return str(Path(archive.location).relative_to(Path.cwd()))
    except ValueError:
        return archive.location


# -- targets --------------------------------------------------------------------------------


class Targets:
    """Reference answers of archived evaluations, loaded from their suites on demand (the archive
    keeps answers, never targets). A suite that cannot be loaded here gives a reason instead."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], dict[str, tuple[str, str]] | str] = {}
        self._lock = threading.Lock()

    def get(self, suite: str, split: str) -> dict[str, tuple[str, str]] | str:
        """{sample id: (input, target)} of one split of a suite, or why it could not be loaded."""
        key = (suite, split)
        with self._lock:
            if key not in self._cache:
                from agentmeta.eval.suites import load_suite

                try:
                    loaded = load_suite(suite, split=split)
                    self._cache[key] = {s.id: (s.input, s.target) for s in loaded.samples}
                except (AgentMetaError, OSError, ValueError, ImportError) as e:
                    self._cache[key] = f"targets not shown: suite {suite!r} did not load here ({e})"
            return self._cache[key]


# -- campaigns ------------------------------------------------------------------------------


def campaign_rows(archive: Archive) -> list[dict[str, Any]]:
    """One row per campaign for the index page, newest first."""
    rows = []
    for camp in reversed(archive.campaigns()):
        cands = archive.candidates(campaign=camp.id, with_evaluations=True)
        suite = camp.config.get("suite")
        stage, evs = _comparable(cands, suite)
        best = max(evs.values(), key=lambda e: e.mean or 0.0) if stage == "full" and evs else None
        conf = camp.state.get("confirmation") or {}
        rows.append(
            {
                "id": camp.id, "name": camp.name, "status": camp.status,
                "strategy": camp.config.get("strategy", "-"), "suite": suite or "-",
                "candidates": len(cands), "best": None if best is None else best.mean,
                "best_id": None if best is None else best.candidate_id,
                "spent_tokens": camp.state.get("spent_tokens"), "iterations": camp.state.get("iterations_done"),
                "verdict": conf.get("verdict"), "confirmed": conf.get("confirmed"),
                "updated": camp.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            }
        )  # fmt: skip
    return rows


def _comparable(cands: list[Candidate], suite: str | None) -> tuple[str, dict[str, Evaluation]]:
    """Each candidate's complete validation evaluation on the stage they can be compared on:
    full if any candidate has one, else subset (scores of different stages are never mixed)."""
    evs: dict[str, dict[str, Evaluation]] = {"full": {}, "subset": {}}
    for c in cands:
        for e in c.evaluations:
            usable = e.split == "validation" and e.stage in evs and not e.incomplete and e.mean is not None
            if usable and (suite is None or e.suite == suite):
                evs[e.stage].setdefault(c.id, e)
    stage = "full" if evs["full"] else "subset"
    return stage, evs[stage]


@dataclass
class CampaignView:
    campaign: Campaign
    leaderboard: list[Any]
    stage: str
    scatter: str
    best_so_far: str
    lineage: str
    confirmation: dict[str, Any] | None
    confirmation_rows: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    seeds: list[str] = field(default_factory=list)
    config: list[tuple[str, str]] = field(default_factory=list)
    looks: list[dict[str, Any]] = field(default_factory=list)
    """The campaign's recorded looks at its test split, oldest first."""
    other_looks: int = 0
    """Looks by other campaigns at the same suite's test split."""


def campaign_view(archive: Archive, id_or_name: str, links: Links) -> CampaignView:
    """Everything the campaign page shows."""
    from agentmeta.search.confirm import pareto_front

    camp = archive.get_campaign(id_or_name)
    cands = archive.candidates(campaign=camp.id, with_evaluations=True)
    suite = camp.config.get("suite")
    board = archive.leaderboard(campaign=camp.id, suite=suite, include_unscored=True, include_incomplete=True)
    stage, evs = _comparable(cands, suite)
    by_id = {c.id: c for c in cands}
    pts = [
        (cid, float(e.mean or 0.0), float(e.tokens_per_sample))
        for cid, e in evs.items()
        if e.tokens_per_sample is not None
    ]
    front = set(pareto_front(pts))
    points = [
        svg.Point(cid, by_id[cid].name, tok, score, seed=by_id[cid].generation == 0, on_front=cid in front)
        for cid, score, tok in pts
    ]
    steps = [
        (int(by_id[cid].metadata.get("iteration", -1)) + 1 if by_id[cid].generation else 0, float(e.mean or 0.0), cid, by_id[cid].name)
        for cid, e in evs.items()
    ]  # fmt: skip
    best_id = max(evs, key=lambda k: evs[k].mean or 0.0) if evs else None
    tree = [
        svg.TreeNode(
            c.id,
            c.name,
            c.generation,
            c.parent_ids,
            evs[c.id].mean if c.id in evs else None,
            status=c.status,
            highlight=c.id == best_id,
        )  # fmt: skip
        for c in cands
    ]
    conf = camp.state.get("confirmation")
    view = CampaignView(
        campaign=camp, leaderboard=board, stage=stage,
        scatter=svg.scatter(points, links.candidate),
        best_so_far=svg.best_so_far(steps, links.candidate) if stage == "full" else svg.empty(
            "best-so-far", "no candidate has reached the full validation stage yet"),
        lineage=svg.lineage(tree, links.candidate), confirmation=conf, candidates=cands,
        seeds=[c.id for c in cands if c.generation == 0],
        config=[(k, str(v)) for k, v in sorted(camp.config.items())],
    )  # fmt: skip
    if conf:
        view.confirmation_rows = confirmation_rows(archive, cands, conf)
    if suite:
        looks = archive.test_looks(suite=suite)
        view.looks = [
            {
                "id": x.id,
                "when": x.created_at.strftime("%Y-%m-%d %H:%M"),
                "n": len(x.sample_ids),
                "settings": ", ".join(f"{k} {v}" for k, v in x.settings.items()),
                "evaluated": len(x.evaluated),
                "repeat": x.repeat,
                "verdict": str(x.result.get("verdict", "")),
            }  # fmt: skip
            for x in looks
            if x.campaign == camp.id
        ]
        view.other_looks = sum(1 for x in looks if x.campaign != camp.id and not x.repeat)
    return view


def confirmation_rows(archive: Archive, cands: list[Candidate], conf: dict[str, Any]) -> list[dict[str, Any]]:
    """The held-out test rows: each confirmed candidate's test score, and its paired difference
    with the best seed on the same samples."""
    rows = []
    seed_id = conf.get("best_seed")
    for c in cands:
        ev = next(
            (e for e in c.evaluations if e.suite == conf.get("suite") and e.split == conf.get("split", "test")
             and e.stage == conf.get("stage", "full")), None,
        )  # fmt: skip
        if ev is None:
            continue
        row: dict[str, Any] = {
            "id": c.id, "name": c.name, "seed": c.generation == 0, "test": ev.mean, "low": ev.ci_low,
            "high": ev.ci_high, "n": ev.n, "tokens": ev.tokens_per_sample,
            "best": c.id == conf.get("best"), "best_seed": c.id == seed_id, "diff": None,
        }  # fmt: skip
        if seed_id and c.id != seed_id:
            try:
                d = archive.diff(c.id, seed_id, suite=ev.suite, split=ev.split, stage=ev.stage)
                row.update(
                    diff=d.mean_diff,
                    diff_low=d.ci_low,
                    diff_high=d.ci_high,
                    p_better=d.p_better,
                    paired_n=d.n,
                )
            except AgentMetaError as e:
                row["diff_note"] = str(e)
        rows.append(row)
    rows.sort(key=lambda r: -(r["test"] or 0.0))
    return rows


# -- candidates -----------------------------------------------------------------------------


def graph_drawing(cand: Candidate) -> str | None:
    """A graph agent's nodes and edges as SVG (None for a kind whose source is not a graph spec, or
    an unreadable spec)."""
    from agentmeta.agents.base import get_kind
    from agentmeta.agents.graph import parse_spec

    try:
        if "operators" not in get_kind(cand.kind).capabilities:
            return None
    except AgentMetaError:  # a plugin's kind that is not installed here
        return None

    try:
        spec = parse_spec(cand.source)
    except AgentMetaError:
        return None
    nodes = []
    for n in spec.nodes:
        detail = {"llm": n.role, "sample": f"{n.role}, n={n.n}", "python": "sandboxed code"}.get(n.type, "")
        if n.demos:
            detail += f", {len(n.demos)} demos"
        nodes.append(svg.FlowNode(n.id, n.type, detail))
    if spec.edges:
        edges = [(e.source, e.target, e.when or "") for e in spec.edges]
    else:  # no edges: the nodes run in order
        ids = [n.id for n in spec.nodes]
        edges = [(a, b, "") for a, b in zip(ids, ids[1:], strict=False)] + [(ids[-1], "END", "")]
    return svg.flow(nodes, edges)


@dataclass
class SampleRow:
    sample_id: str
    score: float
    outcome: str
    answer: str | None
    input: str | None
    target: str | None
    error: str | None


@dataclass
class CandidateView:
    candidate: Candidate
    parents: list[Candidate]
    children: list[Candidate]
    graph: str | None
    evaluation: Evaluation | None
    samples: list[SampleRow]
    targets_note: str | None
    compare_with: list[Candidate]


def _primary(cand: Candidate) -> Evaluation | None:
    """The evaluation behind the candidate's fitness, else its largest validation one."""
    for e in cand.evaluations:
        if e.suite == cand.fitness_suite and e.stage == cand.fitness_stage and e.split == "validation":
            return e
    vals = [e for e in cand.evaluations if e.split == "validation"] or cand.evaluations
    return max(vals, key=lambda e: len(e.scores)) if vals else None


def candidate_view(
    archive: Archive,
    id_or_prefix: str,
    targets: Targets,
    *,
    evaluation: int | None = None,
    with_samples: bool = True,
    compare: bool = True,
) -> CandidateView:
    """The candidate page: its record, lineage, drawing and per-sample answers (failures first).
    `with_samples=False` leaves out the per-sample answers (no suite loaded for targets);
    `compare=False` leaves out the list of candidates to compare with (no campaign read)."""
    cand = archive.get(archive.resolve_id(id_or_prefix))
    lin = archive.lineage(cand.id)
    parents = [a for a in lin.ancestors if lin.depth.get(a.id) == 1]
    ev = None
    if with_samples:
        ev = (
            cand.evaluations[evaluation]
            if evaluation is not None and 0 <= evaluation < len(cand.evaluations)
            else _primary(cand)
        )
    samples: list[SampleRow] = []
    note = None
    if ev is not None:
        found = targets.get(ev.suite, ev.split)
        tmap = found if isinstance(found, dict) else {}
        note = None if isinstance(found, dict) else found
        samples = [
            SampleRow(
                s.sample_id, s.score, s.outcome, s.answer, *tmap.get(s.sample_id, (None, None)), s.error
            )
            for s in ev.scores
        ]
        samples.sort(key=lambda r: (r.outcome == "scored" and r.score >= 1.0, r.score))  # failures first
    others = []
    if compare and cand.campaign:
        others = [
            c
            for c in archive.candidates(campaign=cand.campaign, with_evaluations=True)
            if c.id != cand.id and c.evaluations
        ]
    return CandidateView(cand, parents, lin.children, graph_drawing(cand), ev, samples, note, others)


# -- two candidates -------------------------------------------------------------------------


@dataclass
class CompareView:
    a: Candidate
    b: Candidate
    source_diff: list[tuple[str, str]]
    diff: Any | None
    note: str | None
    shared: list[tuple[str, str, str]] = field(default_factory=list)
    """Every (suite, split, stage) both candidates were evaluated on."""


def source_diff(a: str, b: str) -> list[tuple[str, str]]:
    """A unified diff of two sources as (css class, line) pairs."""
    out = []
    for line in difflib.unified_diff(a.splitlines(), b.splitlines(), "A", "B", lineterm="", n=3):
        cls = "ctx"
        if line.startswith(("+++", "---")):
            cls = "hdr"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        out.append((cls, line))
    return out


def compare_view(
    archive: Archive, a: str, b: str, *, split: str | None = None, stage: str | None = None
) -> CompareView:
    """Two candidates side by side: source diff, per-sample wins and losses, paired CI."""
    ca, cb = archive.get(archive.resolve_id(a)), archive.get(archive.resolve_id(b))
    diff, note = None, None
    try:
        diff = archive.diff(ca.id, cb.id, split=split, stage=stage)
    except AgentMetaError as e:
        note = str(e)
    keys_b = {(e.suite, e.split, e.stage) for e in cb.evaluations}
    shared = [(e.suite, e.split, e.stage) for e in ca.evaluations if (e.suite, e.split, e.stage) in keys_b]
    return CompareView(ca, cb, source_diff(ca.source, cb.source), diff, note, shared)


def change_token(archive: Archive) -> str:
    """A short text that changes whenever a campaign, candidate or evaluation is written."""
    from sqlalchemy import func, select

    from agentmeta.archive import schema as t

    with archive._read() as conn:
        n_cand = conn.execute(select(func.count()).select_from(t.candidates)).scalar_one()
        n_eval = conn.execute(select(func.count()).select_from(t.evaluations)).scalar_one()
        last_c = conn.execute(select(func.max(t.candidates.c.updated_at))).scalar_one()
        last_k = conn.execute(select(func.max(t.campaigns.c.updated_at))).scalar_one()
    return f"{n_cand}.{n_eval}.{last_c}.{last_k}".replace(" ", "T")
