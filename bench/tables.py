"""Markdown tables made from bench/results/*.json, so the docs' figures are the results files'.

Used as an MkDocs hook (mkdocs.yml `hooks:`): a page line `<!-- bench:TABLE FILE -->` becomes
the table, made from `bench/results/FILE` when the site is built, and the plots in bench/results
are served as `bench/<name>.png`. Tables:

- `search-runs`: one row per search campaign (suite, seed, strategy, search tokens, candidates,
  the best by validation, its test score and paired difference with the best seed, verdict);
- `search-summary`: per suite and strategy over its campaigns (confirmed-gain rate, test gain
  over the best seed, paired difference with `random` at the same budget, with CIs);
- `distill`: a distilled adapter's student before/after and its teacher (train.json `distill`);
- `adaptive`: the seeds' methods (bandit, tree search, bootstrap, reprompt) against the best seed.

`python bench/tables.py TABLE FILE` prints one.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
MARK = re.compile(r"^<!-- bench:([a-z-]+) ([\w.-]+\.json) -->$", re.M)


def _suite(name: str) -> str:
    return name.split("?")[0]


def _agent(name: str | None) -> str:
    name = (name or "-").replace(" of Chain-of-Thought (graph)", " of CoT").replace("Chain-of-Thought (graph)", "CoT")
    return name.replace("|", "/")[:70]


def search_runs(data: dict[str, Any]) -> str:
    rows = [r for r in data["results"] if r["strategy"] != "seeds"]
    out = [
        "| suite | seed | strategy | search tokens | proposed / valid / full stage | best by validation "
        "| test [95% CI] | tok/sample | vs best seed [95% CI] | P(better) | verdict |",
        "| --- | ---: | --- | ---: | --- | --- | --- | ---: | --- | ---: | --- |",
    ]
    for r in sorted(rows, key=lambda r: (_suite(r["suite"]), r["seed"], r["strategy"])):
        b = r.get("best") or {}
        test = f"{b['test']:.2f} [{b['test_ci_low']:.2f}, {b['test_ci_high']:.2f}]" if b.get("test") is not None else "-"
        diff = (
            f"{b['diff']:+.2f} [{b['diff_ci_low']:+.2f}, {b['diff_ci_high']:+.2f}]"
            if b.get("diff") is not None
            else "(is the seed)"
        )
        pb = f"{b['p_better']:.2f}" if b.get("p_better") is not None else "-"
        verdict = "**confirmed gain**" if r.get("confirmed") else ("saving" if r.get("cheaper") else "no gain")
        spent = f"{r['search_tokens']:,}" if "search_tokens" in r else f"({r['spent_tokens']:,})"
        out.append(
            f"| {_suite(r['suite'])} | {r['seed']} | {r['strategy']} | {spent} | {r['proposed']} / {r['valid']} / "
            f"{r['full_stage']} | {_agent(b.get('name'))} | {test} | {b.get('tokens_per_sample') or 0:.0f} | {diff} "
            f"| {pb} | {verdict} |"
        )
    return "\n".join(out)


def search_summary(data: dict[str, Any]) -> str:
    out = [
        "| suite | strategy | campaigns | confirmed gains [95% CI] | test gain over the best seed [95% CI] "
        "| vs `random`, paired [95% CI] | search tokens (mean; of how many campaigns where not all) |",
        "| --- | --- | ---: | --- | --- | --- | ---: |",
    ]
    for s in data["summary"]["strategies"]:
        vs = (
            f"{s['vs_random_mean']:+.3f} [{s['vs_random_ci'][0]:+.3f}, {s['vs_random_ci'][1]:+.3f}] (n={s['vs_random_n']})"
            if "vs_random_mean" in s
            else "-"
        )
        spend = "-"
        if s.get("search_tokens_mean"):  # older campaigns' results do not record it
            n = s.get("search_tokens_n", s["campaigns"])
            spend = f"{s['search_tokens_mean']:,.0f}" + (f" (of {n})" if n < s["campaigns"] else "")
        out.append(
            f"| {_suite(s.get('suite', 'all'))} | {s['strategy']} | {s['campaigns']} | {s['confirmed']}/{s['campaigns']} "
            f"[{s['confirmed_ci'][0]:.2f}, {s['confirmed_ci'][1]:.2f}] | {s['gain_mean']:+.3f} "
            f"[{s['gain_ci'][0]:+.3f}, {s['gain_ci'][1]:+.3f}] | {vs} | {spend} |"
        )
    return "\n".join(out)


def _ci(lo: float, hi: float) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]"


def distill(data: dict[str, Any]) -> str:
    """bench_distill.py's table (the `distill` section of train.json)."""
    out = [
        "| agent | test | tokens/sample | vs base model, paired [95% CI] | vs teacher, paired [95% CI] |",
        "| --- | ---: | ---: | --- | --- |",
    ]
    for r in data["distill"]["table"]:
        vb = f"{r['vs_base'][0]:+.3f} {_ci(*r['vs_base'][1:])}" if "vs_base" in r else "-"
        vt = f"{r['vs_teacher'][0]:+.3f} {_ci(*r['vs_teacher'][1:])}" if "vs_teacher" in r else "-"
        out.append(f"| {_agent(r['agent'])} | {r['test']:.3f} | {r['tokens']:.0f} | {vb} | {vt} |")
    return "\n".join(out)


def adaptive(data: dict[str, Any]) -> str:
    """bench_adaptive.py's table: each method against the best seed on the same test samples."""
    out = [
        "| suite | method | test [95% CI] | vs best seed, paired [95% CI] | tokens/sample | train tokens |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    for res in data["results"]:
        for r in res["rows"]:
            diff = f"{r['diff']:+.3f} {_ci(*r['diff_ci'])}" if "diff" in r else "-"
            out.append(
                f"| {_suite(res['suite'])} | {r['method']} | {r['test']:.3f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] "
                f"| {diff} | {r['tokens']:.0f} | {r['train_tokens']:.0f} |"
            )
    return "\n".join(out)


TABLES = {"search-runs": search_runs, "search-summary": search_summary, "distill": distill, "adaptive": adaptive}


def render(table: str, file: str) -> str:
    if table not in TABLES:
        raise ValueError(f"unknown bench table {table!r}; known: {', '.join(TABLES)}")
    path = RESULTS / file
    if not path.is_file():
        raise ValueError(f"bench table {table}: {path.name} is not in bench/results")
    return TABLES[table](json.loads(path.read_text()))


def on_files(files: Any, config: Any, **_: Any) -> Any:
    """MkDocs hook: the plots in bench/results are pages' images at `bench/<name>.png`."""
    from mkdocs.structure.files import File

    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"bench/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown: str, **_: Any) -> str:
    """MkDocs hook: each `<!-- bench:TABLE FILE -->` line becomes its table."""
    return MARK.sub(lambda m: render(m.group(1), m.group(2)), markdown)


if __name__ == "__main__":
    print(render(sys.argv[1], sys.argv[2]))
