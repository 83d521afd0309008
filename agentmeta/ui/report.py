"""`agentmeta report`: one campaign as one self-contained HTML file (inline CSS and SVG plots,
no script, no external resource), readable offline and safe to share."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from agentmeta.archive import Archive
from agentmeta.errors import AgentMetaError, ConfigError
from agentmeta.ui import views
from agentmeta.ui.render import render

DEFAULT_DETAILED = 10


def render_report(archive: Archive, campaign: str, *, detailed: int = DEFAULT_DETAILED) -> str:
    """The report's HTML. Every candidate of the campaign gets its section (record, lineage,
    graph, source, evaluations); the `detailed` best ones, the seeds and the confirmed ones also
    get their per-sample answers against targets. The best candidate is compared with the best
    seed (on the test split when the campaign was confirmed)."""
    if detailed < 0:
        raise ConfigError(f"detailed must be >= 0; got {detailed}")
    links = views.Links(report=True)
    camp = views.campaign_view(archive, campaign, links)
    conf = camp.confirmation or {}
    ranked = [e.id for e in camp.leaderboard if e.fitness is not None]
    detail = set(ranked[:detailed]) | set(camp.seeds) | {r["id"] for r in camp.confirmation_rows}
    targets = views.Targets()
    cands = []
    for c in sorted(camp.candidates, key=lambda c: (ranked.index(c.id) if c.id in ranked else len(ranked), c.created_at)):
        cands.append(views.candidate_view(archive, c.id, targets, with_samples=c.id in detail, compare=False))
    compares = []
    best = conf.get("best") or (ranked[0] if ranked else None)
    seed = conf.get("best_seed") or next((i for i in ranked if i in camp.seeds), None)
    if best and seed and best != seed:
        split = conf.get("split") if conf.get("best") else None
        compares.append(views.compare_view(archive, best, seed, split=split))
    return render(
        "report.html", links=links, report=True, live_token=None, archive_location=archive.location,
        campaign=camp, candidates=cands, compares=compares,
        written=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )  # fmt: skip


def write_report(archive: Archive | str, campaign: str, out: str | Path, *, detailed: int = DEFAULT_DETAILED) -> Path:
    """Write the report of `campaign` to `out`; return its path."""
    arch = archive if isinstance(archive, Archive) else Archive(archive, create=False)
    html = render_report(arch, campaign, detailed=detailed)
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    except OSError as e:
        raise AgentMetaError(f"cannot write the report to {path}: {e}") from e
    return path
