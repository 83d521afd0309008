"""One candidate as one standalone agent file (`agentmeta export ID`): what `agentmeta eval FILE`
and `agentmeta serve FILE` take unchanged, with where it came from and how it scored as a comment
header.

- a code agent: a `.py` file, `# name:` and `# thought:` lines, then its source (the helper API,
  `LLMAgentBase` and `Info`, is what the sandbox provides to every code agent);
- any other kind: a `.yaml` file with `kind`, `name`, `thought` and the kind's spec fields (a
  graph's `nodes`, a prompt's `system`/`template`, ...).

The header lists the candidate's id, campaign, model, lineage (ancestors, nearest first), its
validation evaluations (stage, mean, 95% CI, n) and the test-split looks that included it (with
the paired difference against the best seed). Comments only: loading the file ignores them.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from agentmeta.errors import ArchiveError

if TYPE_CHECKING:
    from agentmeta.archive.store import Archive

_META_LINE = re.compile(r"^#\s*(name|thought):.*\n?", re.M)


def _ci(mean: float | None, low: float | None, high: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def header_lines(archive: Archive, candidate_id: str) -> list[str]:
    """The comment lines of an exported candidate (without the comment marker)."""
    cand = archive.get(candidate_id)
    lines = [
        f"exported by agentmeta from {archive.location} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"candidate {cand.id} ({cand.kind}), generation {cand.generation}, status {cand.status}",
    ]
    if cand.campaign:
        try:
            lines.append(f"campaign {archive.get_campaign(cand.campaign).name}")
        except ArchiveError:
            lines.append(f"campaign {cand.campaign}")
    if cand.model_specs:
        lines.append("models: " + ", ".join(f"{k} {v}" for k, v in sorted(cand.model_specs.items())))
    ancestors = archive.lineage(cand.id).ancestors
    if ancestors:
        lines.append("lineage (nearest first): " + " <- ".join(f"{a.name} ({a.id})" for a in ancestors[:8]))
    for ev in cand.evaluations:
        if ev.split == "test":
            continue
        lines.append(f"{ev.split} {ev.stage} on {ev.suite}: {_ci(ev.mean, ev.ci_low, ev.ci_high)}, n={ev.n}")
    for look in archive.test_looks(campaign=cand.campaign) if cand.campaign else []:
        row = next((r for r in look.result.get("rows", []) if r.get("id") == cand.id), None)
        if row is None or look.repeat:
            continue
        diff = row.get("diff")
        vs = (
            f", vs best seed {diff:+.3f} [{row['diff_ci_low']:.3f}, {row['diff_ci_high']:.3f}]"
            if diff is not None
            else ""
        )
        lines.append(
            f"test look {look.id} ({look.created_at:%Y-%m-%d}, {len(look.sample_ids)} samples): "
            f"{_ci(row.get('test'), row.get('test_ci_low'), row.get('test_ci_high'))}{vs}"
        )
        if look.result.get("verdict"):
            lines.append(f"  verdict: {look.result['verdict']}")
    lines.append("run it: agentmeta eval FILE --suite SUITE; serve it: agentmeta serve FILE")
    return lines


def export_file(archive: Archive, candidate_id: str, out: str | Path | None = None) -> tuple[Path, str]:
    """Write candidate `candidate_id` as one agent file (see the module); `out` a file or a folder
    (default: the current folder), named `<name>-<id>.py|.yaml` when a folder. Returns (path, text)."""
    cand = archive.get(candidate_id)
    if not cand.source and cand.kind != "conductor":
        raise ArchiveError(f"candidate {cand.id} has no source to export (status {cand.status})")
    comments = "".join(f"# {line}\n" for line in header_lines(archive, cand.id))
    if cand.kind == "code":
        suffix = ".py"
        body = _META_LINE.sub("", cand.source).strip("\n")  # the file's own name and thought lines win
        text = f"# name: {cand.name}\n# thought: {' '.join(cand.thought.split())}\n{comments}\n{body}\n"
    else:
        suffix = ".yaml"
        try:
            spec = json.loads(cand.source) if cand.source else {}
        except ValueError:
            spec = {"source": cand.source}
        if not isinstance(spec, dict):
            raise ArchiveError(
                f"candidate {cand.id}: a {cand.kind} source that is not a mapping cannot be exported"
            )
        data: dict[str, Any] = {"kind": cand.kind, "name": cand.name, "thought": cand.thought}
        data.update({k: v for k, v in spec.items() if k not in data})
        text = comments + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    target = Path(out) if out is not None else Path.cwd()
    if target.is_dir() or (out is not None and str(out).endswith(("/", "\\"))):
        safe = (
            "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in cand.name)[:60].strip("-") or "agent"
        )
        target = target / f"{safe}-{cand.id}{suffix}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target, text
