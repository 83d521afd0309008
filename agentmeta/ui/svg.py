"""Plots as inline SVG, drawn in Python: no JavaScript library, nothing fetched, so the same markup
serves the live UI and the offline report. Every text that comes from the archive goes through
`esc` (names, ids, labels): a candidate named `<script>` is drawn as those characters."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

Href = Callable[[str], str]
"""Maps a candidate id to the link of its page."""


def esc(value: object) -> str:
    """HTML-escaped text (quotes included, so it is safe inside attributes too)."""
    return escape(str(value), quote=True)


def _fmt(v: float) -> str:
    return f"{v:.1f}"


def _ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> list[float]:
    """About `n` round tick values covering [lo, hi] (whole numbers only if `integer`)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1.0, math.ceil(step))
    start = math.ceil(lo / step - 1e-9) * step
    out, v = [], start
    while v <= hi + 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _tick_label(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:g}"


def color(score: float | None) -> str:
    """Red (0) to green (1); grey when there is no score."""
    if score is None or math.isnan(score):
        return "#b8b8b8"
    s = min(1.0, max(0.0, score))
    r, g = int(215 - 170 * s), int(70 + 120 * s)
    return f"rgb({r},{g},80)"


@dataclass
class Axes:
    """A plot frame: data ranges mapped onto a `width` x `height` SVG with margins."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    width: int = 560
    height: int = 300
    left: int = 56
    right: int = 16
    top: int = 14
    bottom: int = 42
    integer_x: bool = False
    parts: list[str] = field(default_factory=list)

    def x(self, v: float) -> float:
        lo, hi = self.x_range
        return self.left + (v - lo) / ((hi - lo) or 1.0) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        lo, hi = self.y_range
        return self.height - self.bottom - (v - lo) / ((hi - lo) or 1.0) * (self.height - self.top - self.bottom)

    def frame(self, x_label: str, y_label: str) -> None:
        x0, x1 = self.left, self.width - self.right
        y0, y1 = self.height - self.bottom, self.top
        for t in _ticks(*self.y_range):
            yy = _fmt(self.y(t))
            self.parts.append(f'<line x1="{x0}" y1="{yy}" x2="{x1}" y2="{yy}" class="grid"/>')
            self.parts.append(f'<text x="{x0 - 6}" y="{yy}" class="tick" text-anchor="end" dy="4">{_tick_label(t)}</text>')
        for t in _ticks(*self.x_range, integer=self.integer_x):
            xx = _fmt(self.x(t))
            self.parts.append(f'<line x1="{xx}" y1="{y0}" x2="{xx}" y2="{y0 + 4}" class="axis"/>')
            self.parts.append(f'<text x="{xx}" y="{y0 + 17}" class="tick" text-anchor="middle">{_tick_label(t)}</text>')
        self.parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/>')
        self.parts.append(f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>')
        self.parts.append(f'<text x="{(x0 + x1) / 2:.0f}" y="{self.height - 6}" class="label" text-anchor="middle">{esc(x_label)}</text>')
        self.parts.append(
            f'<text x="14" y="{(y0 + y1) / 2:.0f}" class="label" text-anchor="middle" '
            f'transform="rotate(-90 14 {(y0 + y1) / 2:.0f})">{esc(y_label)}</text>'
        )

    def svg(self, plot_id: str, title: str) -> str:
        body = "\n".join(self.parts)
        return (
            f'<svg class="plot" id="{esc(plot_id)}" data-plot="{esc(plot_id)}" role="img" '
            f'viewBox="0 0 {self.width} {self.height}" width="{self.width}" height="{self.height}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{esc(title)}</title>{body}</svg>'
        )


def _range(values: Sequence[float], *, pad: float = 0.05, floor: float | None = None) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    lo, hi = lo - pad * span, hi + pad * span
    if floor is not None:
        lo = max(floor, lo)
    return lo, hi


def empty(plot_id: str, message: str) -> str:
    """A placeholder plot saying why there is nothing to draw."""
    return (
        f'<svg class="plot empty" id="{esc(plot_id)}" data-plot="{esc(plot_id)}" viewBox="0 0 560 60" '
        f'width="560" height="60" xmlns="http://www.w3.org/2000/svg"><text x="10" y="34" class="label">'
        f"{esc(message)}</text></svg>"
    )


@dataclass
class Point:
    """One candidate in a scatter plot."""

    id: str
    name: str
    x: float
    y: float
    seed: bool = False
    on_front: bool = False


def scatter(points: Sequence[Point], href: Href, *, plot_id: str = "scatter") -> str:
    """Score against tokens per sample; the Pareto front (fewer tokens, higher score) as a line."""
    if not points:
        return empty(plot_id, "no candidate has a complete validation evaluation yet")
    ax = Axes(_range([p.x for p in points], floor=0.0), _range([p.y for p in points] + [0.0, 1.0]))
    ax.frame("tokens per sample", "validation score")
    front = sorted((p for p in points if p.on_front), key=lambda p: p.x)
    if len(front) > 1:
        path = " ".join(f"{_fmt(ax.x(p.x))},{_fmt(ax.y(p.y))}" for p in front)
        ax.parts.append(f'<polyline points="{path}" class="front"/>')
    for p in points:
        shape = (
            f'<rect x="{ax.x(p.x) - 5:.1f}" y="{ax.y(p.y) - 5:.1f}" width="10" height="10"'
            if p.seed
            else f'<circle cx="{_fmt(ax.x(p.x))}" cy="{_fmt(ax.y(p.y))}" r="5"'
        )
        cls = "pt front-pt" if p.on_front else "pt"
        ax.parts.append(
            f'<a href="{esc(href(p.id))}" class="pt-link">{shape} class="{cls}" fill="{color(p.y)}">'
            f"<title>{esc(p.name)} ({esc(p.id)}): {p.y:.3f} at {p.x:.0f} tokens/sample"
            f"{' (seed)' if p.seed else ''}{' (on the front)' if p.on_front else ''}</title>"
            f"{'</rect>' if p.seed else '</circle>'}</a>"
        )
    return ax.svg(plot_id, "score x cost, Pareto front")


def best_so_far(
    steps: Sequence[tuple[int, float, str, str]], href: Href, *, plot_id: str = "best-so-far"
) -> str:
    """Best validation score after each iteration (a step line) over every candidate's score
    (dots). `steps`: (iteration, score, candidate id, name), in any order."""
    if not steps:
        return empty(plot_id, "no full-stage validation score yet")
    pts = sorted(steps, key=lambda s: (s[0], -s[1]))
    iters = [s[0] for s in pts]
    ax = Axes((min(iters) - 0.5, max(iters) + 0.5), _range([s[1] for s in pts] + [0.0, 1.0]), integer_x=True)
    ax.frame("iteration (0 = seeds)", "best validation score")
    best: float | None = None
    line: list[str] = []
    for it in sorted(set(iters)):
        here = max(s[1] for s in pts if s[0] == it)
        if best is None or here > best:
            if best is not None:
                line.append(f"{_fmt(ax.x(it))},{_fmt(ax.y(best))}")
            best = here
        line.append(f"{_fmt(ax.x(it))},{_fmt(ax.y(best))}")
    line.append(f"{_fmt(ax.x(max(iters) + 0.5))},{_fmt(ax.y(best or 0.0))}")
    ax.parts.append(f'<polyline points="{" ".join(line)}" class="best"/>')
    for it, score, cid, name in pts:
        ax.parts.append(
            f'<a href="{esc(href(cid))}" class="pt-link"><circle cx="{_fmt(ax.x(it))}" cy="{_fmt(ax.y(score))}" '
            f'r="3.5" class="pt small" fill="{color(score)}"><title>{esc(name)} ({esc(cid)}): {score:.3f}, '
            f"iteration {it}</title></circle></a>"
        )
    return ax.svg(plot_id, "best-so-far over iterations")


@dataclass
class TreeNode:
    """One candidate in the lineage tree."""

    id: str
    name: str
    generation: int
    parents: list[str]
    score: float | None
    status: str = "ok"
    highlight: bool = False


def lineage(nodes: Sequence[TreeNode], href: Href, *, plot_id: str = "lineage") -> str:
    """Candidates by generation (columns), edges parent -> child; colour = validation score."""
    if not nodes:
        return empty(plot_id, "no candidates")
    by_gen: dict[int, list[TreeNode]] = {}
    for n in nodes:
        by_gen.setdefault(n.generation, []).append(n)
    dx, dy, left, top, label_w = 210, 34, 20, 20, 165
    pos: dict[str, tuple[float, float]] = {}
    for col, gen in enumerate(sorted(by_gen)):
        for row, n in enumerate(by_gen[gen]):
            pos[n.id] = (left + col * dx, top + row * dy)
    width = left + len(by_gen) * dx + 20
    height = top + max(len(v) for v in by_gen.values()) * dy + 10
    parts = []
    for n in nodes:
        for p in n.parents:
            if p in pos:
                (x1, y1), (x2, y2) = pos[p], pos[n.id]
                mid = (x1 + label_w + x2) / 2
                parts.append(
                    f'<path d="M{x1 + label_w:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2 - 8:.0f},{y2:.0f}" class="edge"/>'
                )
    for n in nodes:
        x, y = pos[n.id]
        label = n.name if len(n.name) <= 20 else n.name[:19] + "…"
        score = "-" if n.score is None else f"{n.score:.2f}"
        cls = "node hl" if n.highlight else "node"
        parts.append(
            f'<a href="{esc(href(n.id))}" class="node-link" data-id="{esc(n.id)}"><g class="{cls}">'
            f'<circle cx="{x:.0f}" cy="{y:.0f}" r="8" fill="{color(n.score)}"/>'
            f'<text x="{x + 12:.0f}" y="{y + 4:.0f}" class="nlabel">{esc(label)} {score}</text>'
            f"<title>{esc(n.name)} ({esc(n.id)}), generation {n.generation}, {esc(n.status)}, score {score}</title>"
            f"</g></a>"
        )
    return (
        f'<svg class="plot tree" id="{esc(plot_id)}" data-plot="{esc(plot_id)}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>lineage</title>{''.join(parts)}</svg>"
    )


@dataclass
class FlowNode:
    """One node of a graph agent, as drawn."""

    id: str
    kind: str
    detail: str = ""


def flow(
    nodes: Sequence[FlowNode], edges: Sequence[tuple[str, str, str]], *, plot_id: str = "graph-agent"
) -> str:
    """A graph agent: its nodes top to bottom in order, edges as arrows (conditions as labels).
    Edges that go back up (loops) are drawn on the right."""
    if not nodes:
        return empty(plot_id, "no nodes")
    ids = [n.id for n in nodes] + ["END"]
    box_w, box_h, gap, left, top = 260, 44, 30, 30, 16
    ypos = {nid: top + i * (box_h + gap) for i, nid in enumerate(ids)}
    width = left + box_w + 180
    height = top + len(ids) * (box_h + gap)
    parts = [
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>'
    ]
    cx = left + box_w / 2
    for k, (src, dst, when) in enumerate(edges):
        if src not in ypos or dst not in ypos:
            continue
        y1, y2 = ypos[src], ypos[dst]
        if y2 > y1:
            if ids.index(dst) == ids.index(src) + 1:
                d = f"M{cx:.0f},{y1 + box_h} L{cx:.0f},{y2}"
                lx, ly = cx + 6, (y1 + box_h + y2) / 2 + 4
            else:  # skips nodes: go round on the left
                d = f"M{left},{y1 + box_h / 2} C{left - 25},{y1 + box_h / 2} {left - 25},{y2 + box_h / 2} {left},{y2 + box_h / 2}"
                lx, ly = 2, (y1 + y2) / 2 + box_h / 2
        else:  # a loop back up: on the right
            off = 30 + 18 * (k % 4)
            xr = left + box_w
            d = f"M{xr},{y1 + box_h / 2} C{xr + off},{y1 + box_h / 2} {xr + off},{y2 + box_h / 2} {xr},{y2 + box_h / 2}"
            lx, ly = xr + off + 4, (y1 + y2) / 2 + box_h / 2
        parts.append(f'<path d="{d}" class="edge" marker-end="url(#arrow)"/>')
        if when:
            parts.append(f'<text x="{lx:.0f}" y="{ly:.0f}" class="elabel">{esc(when[:40])}</text>')
    for n in [*nodes, FlowNode("END", "end")]:
        y = ypos[n.id]
        detail = n.detail if len(n.detail) <= 38 else n.detail[:37] + "…"
        parts.append(
            f'<g class="fnode {esc(n.kind)}"><rect x="{left}" y="{y}" width="{box_w}" height="{box_h}" rx="6"/>'
            f'<text x="{left + 10}" y="{y + 18}" class="fid">{esc(n.id)} · {esc(n.kind)}</text>'
            f'<text x="{left + 10}" y="{y + 35}" class="fdetail">{esc(detail)}</text>'
            f"<title>{esc(n.id)} ({esc(n.kind)}): {esc(n.detail)}</title></g>"
        )
    return (
        f'<svg class="plot flow" id="{esc(plot_id)}" data-plot="{esc(plot_id)}" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>graph agent</title>{''.join(parts)}</svg>"
    )
