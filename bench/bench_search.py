"""Search quality: every strategy x suites x seeds on the embedded model, at the same token budget,
each campaign ending with its confirmation on held-out test samples.

For each (suite, seed) a seeds-only campaign runs first: the seed agents on the full validation
stage and their confirmation on the test samples. Its model calls fill a call cache that every
strategy's campaign on that (suite, seed) then shares, so each strategy starts from the same scored
seeds at no spend and `--budget` (tokens actually spent: task and meta model, seeds excluded) is the
same for all. tok/sample still counts cached calls at their cost, so costs stay comparable. A
campaign stops at the first iteration that starts with its budget spent (so it may overshoot by
one candidate: the spend is reported). The `random` strategy is the baseline at the same budget.

Per campaign: the best-so-far full-stage validation score against tokens spent, and the
confirmation (best candidate by validation and the score x cost Pareto front vs the best seed on the
same test samples: test score with exact CI, tokens per sample, paired difference with CI,
P(better), a confirmed gain or a confirmed saving — at most a third of the seed's tokens, shown not
worse by the margin, Holm-corrected). "proposed/valid/full": candidates proposed (invalid
placeholders included), valid ones, and those that reached the full stage. Per strategy over its
campaigns (summary.strategies): the confirmed-gain rate with its exact CI, the mean test gain of its
best over the best seed, and the mean paired test difference with `random` on the same suite, seed
(so the same test samples) and budget, each with a seeded bootstrap CI over campaigns. Prints a table, writes bench/results/search.json and bench/results/search.png.

    python bench/bench_search.py [--suites A,B] [--seeds 0,1] [--strategies evolve,random,...] [--budget 8000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MAIN_SUITE = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
STRATEGIES = "meta-agent,evolve,prompt,random,bayes,tree"
STRATEGY_OPTIONS: dict[str, dict[str, Any]] = {
    "adaptive": {"adaptive": True},
    "meta-evolve": {"meta_prompt": "evolve"},
    "reprompt": {"demos": "reprompt"},
}
"""Campaign settings a strategy label may add after `+` (e.g. `prompt+meta-evolve`, `random+adaptive`)."""


def row_of(conf: Any, cid: str | None) -> dict[str, Any] | None:
    row = conf.row(cid) if cid else None
    return None if row is None else row.model_dump(mode="json")


def run_campaign(
    archive: Any, model: Any, suite: str, seed: int, strategy: str, args: argparse.Namespace, iterations: int
) -> dict[str, Any]:
    from agentmeta.search import Campaign, SearchConfig

    base, *flags = strategy.split("+")
    options: dict[str, Any] = {}
    for flag in flags:  # a strategy label such as prompt+meta-evolve or random+adaptive
        if flag not in STRATEGY_OPTIONS:
            raise SystemExit(f"unknown strategy option {flag!r} in {strategy!r}; options: {', '.join(STRATEGY_OPTIONS)}")
        options.update(STRATEGY_OPTIONS[flag])
    config = SearchConfig(
        suite=suite, strategy="random" if base == "seeds" else base, kind="graph", **options, seed=seed, seeds=args.seed_agents.split(","),
        subset=args.subset, full=args.full, iterations=iterations,
        max_tokens=args.budget if iterations else None, confirm_limit=args.confirm_limit,
        concurrency=args.concurrency, reflexion_rounds=1, name=f"{strategy}:{suite}:s{seed}",
        race=[int(x) for x in args.race.split(",") if x] if args.race else [],
        parallel=getattr(args, "parallel", 1),
    )  # fmt: skip
    curve: list[dict[str, Any]] = []
    camp = Campaign(config, archive, model=model, meta_model=model)
    spent0 = camp.spent_tokens()

    def progress(ev: dict[str, Any]) -> None:
        if ev.get("event") == "evaluated" and ev.get("stage") == "full" and ev.get("mean") is not None:
            best = max([p["best"] for p in curve] + [ev["mean"]])
            curve.append({"tokens": camp.spent_tokens() - spent0, "score": ev["mean"], "best": best})
        if ev.get("event") in ("candidate", "no-proposal", "invalid", "not_promoted", "confirmed"):
            print(f"    {strategy} s{seed}: {ev.get('event')} {ev.get('name') or ev.get('id') or ''}", flush=True)

    camp.progress = progress
    start = time.perf_counter()
    result = camp.run()
    wall = time.perf_counter() - start
    conf = result.confirmation
    cands = archive.candidates(campaign=camp.record.id)
    new = [c for c in cands if c.generation > 0]
    out = {
        "strategy": strategy,
        "suite": suite,
        "seed": seed,
        "spent_tokens": camp.spent_tokens() - spent0,
        "search_tokens": result.search_tokens - spent0,  # before the confirmation: what the budget limits
        "wall_s": round(wall, 1),
        "stop_reason": result.stop_reason,
        "proposed": len(new),
        "valid": sum(c.status == "ok" for c in new),
        "full_stage": sum(c.fitness_stage == "full" for c in new if c.status == "ok"),
        "curve": curve,
    }
    if conf is not None:
        best, seed_row = row_of(conf, conf.best), row_of(conf, conf.best_seed)
        for row in (best, seed_row):  # per-sample test scores: what pairs with peers run elsewhere
            ev = archive.get_evaluation(row["id"], suite, "test", "confirm") if row else None
            if row is not None and ev is not None:
                row["test_scores"] = ev.score_by_id()
        out.update(
            confirmed=conf.confirmed, cheaper=conf.cheaper, verdict=conf.verdict, test_n=conf.n,
            best=best, best_seed=seed_row, saving=row_of(conf, conf.cheaper[0]) if conf.cheaper else None,
            rows=[r.model_dump(mode="json") for r in conf.rows],
        )  # fmt: skip
    return out


def fmt_row(r: dict[str, Any]) -> str:
    b, s = r.get("best") or {}, r.get("best_seed") or {}
    diff = (
        f"{b['diff']:+.2f} [{b['diff_ci_low']:+.2f},{b['diff_ci_high']:+.2f}] P={b['p_better']:.2f}"
        if b.get("diff") is not None
        else "(the seed)"
    )
    tok = f"{b.get('tokens_per_sample') or 0:.0f}/{s.get('tokens_per_sample') or 0:.0f}"
    flag = "GAIN" if r.get("confirmed") else ("SAVING" if r.get("cheaper") else "-")
    return (
        f"{r['suite'][:22]:22} s{r['seed']} {r['strategy']:10} {r['spent_tokens']:>7} {r['proposed']:>3}/{r['valid']}/{r['full_stage']:<3}"
        f" {(b.get('name') or '-')[:28]:28} {b.get('validation') or 0:.2f} {b.get('test') or 0:.2f}/{s.get('test') or 0:.2f}"
        f" {tok:>9} {diff:34} {flag}"
    )


def best_so_far(r: dict[str, Any], grid: list[float]) -> list[float]:
    """A campaign's best full-stage validation score after each of `grid`'s token counts (its
    first score before any spend: the seeds, evaluated from the shared call cache)."""
    out, j, best = [], 0, r["curve"][0]["best"]
    for x in grid:
        while j < len(r["curve"]) and r["curve"][j]["tokens"] <= x:
            best = r["curve"][j]["best"]
            j += 1
        out.append(best)
    return out


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Per suite, per strategy: the median best-so-far validation score against tokens spent over
    its campaigns, with a band from the 25th to the 75th percentile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    suites = sorted({r["suite"] for r in results})
    fig, axes = plt.subplots(1, len(suites), figsize=(6 * len(suites), 4.2), squeeze=False)
    colors = {"meta-agent": "tab:blue", "evolve": "tab:green", "prompt": "tab:orange", "random": "tab:gray",
              "bayes": "tab:red", "tree": "tab:purple"}  # fmt: skip
    for ax, suite in zip(axes[0], suites, strict=True):
        mine = [r for r in results if r["suite"] == suite and r["strategy"] != "seeds" and r["curve"]]
        if not mine:
            continue
        top = max(p["tokens"] for r in mine for p in r["curve"])
        grid = list(np.linspace(0, top, 60))
        for strategy in dict.fromkeys(r["strategy"] for r in mine):
            ys = np.array([best_so_far(r, grid) for r in mine if r["strategy"] == strategy])
            color = colors.get(strategy, "k")
            ax.plot(grid, np.median(ys, axis=0), color=color, label=f"{strategy} (n={len(ys)})")
            ax.fill_between(grid, np.percentile(ys, 25, axis=0), np.percentile(ys, 75, axis=0), color=color, alpha=0.2)
        ax.set_title(suite.split("?")[0], fontsize=10)
        ax.set_xlabel("tokens spent (seeds excluded)")
        ax.set_ylabel("best full-stage validation score (median, IQR)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default=f"{MAIN_SUITE},drop-lite")
    ap.add_argument("--seeds", default="0,1", help="campaign seeds (sampling, selection)")
    ap.add_argument("--strategies", default=STRATEGIES, help="strategy labels; NAME+adaptive, NAME+meta-evolve, NAME+reprompt add those campaign settings")
    ap.add_argument("--seed-agents", default="cot,program_of_thought", help="seed agents every campaign starts from")
    ap.add_argument("--budget", type=int, default=8000, help="tokens spent per campaign beyond the seeds")
    ap.add_argument("--max-iterations", type=int, default=8)
    ap.add_argument("--subset", type=int, default=8)
    ap.add_argument("--race", default="", help="racing rungs, e.g. 16 (off by default)")
    ap.add_argument("--parallel", type=int, default=1, help="candidates evaluated at once (1: one at a time)")
    ap.add_argument("--full", type=int, default=32)
    ap.add_argument("--confirm-limit", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="the embedded model's weights (AGENTMETA_DTYPE); float32, the format every recorded campaign used",
    )
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "search.json"))
    ap.add_argument("--append", action="store_true",
                    help="add these runs to the results already in --out (campaigns already there are skipped)")  # fmt: skip
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="only join these results files into --out")
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, Path(args.out))
        return

    os.environ["AGENTMETA_DTYPE"] = args.dtype
    from agentmeta import get_model
    from agentmeta.archive import Archive
    from agentmeta.models.base import Model
    from agentmeta.models.cache import CallCache

    work = Path(tempfile.mkdtemp(prefix="bench-search-"))
    archive = Archive(work / "archive.db")
    base = get_model(cache=False)
    results: list[dict[str, Any]] = []
    earlier: list[dict[str, Any]] = []
    if args.append and Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text())
        earlier = old.get("runs", [])
        results = old["results"]
    start = time.perf_counter()
    done = {(r["suite"], r["seed"], r["strategy"]) for r in results}
    """With --append, campaigns already in the file are not run again (a stopped piece resumes)."""
    for suite_i, suite in enumerate(args.suites.split(",")):
        for seed in [int(s) for s in args.seeds.split(",")]:
            # one call cache per (suite, seed): the seeds-only campaign fills it, every strategy shares it
            model = Model(base.provider, cache=CallCache(work / f"calls-{suite_i}-{seed}.sqlite"))
            if (suite, seed, "seeds") not in done:
                print(f"{suite} seed {seed}: seeds", flush=True)
                results.append(run_campaign(archive, model, suite, seed, "seeds", args, iterations=0))
            for strategy in args.strategies.split(","):
                if (suite, seed, strategy) in done:
                    print(f"{suite} seed {seed}: {strategy} already in {args.out}", flush=True)
                    continue
                print(f"{suite} seed {seed}: {strategy}", flush=True)
                results.append(run_campaign(archive, model, suite, seed, strategy, args, args.max_iterations))
                print("  " + fmt_row(results[-1]), flush=True)
                # a piece stopped here still has its settings on record (`--merge` finishes it)
                partial = {"partial": True, "runs": earlier + [this_run(args, start)], "results": results}
                Path(args.out).write_text(json.dumps(partial, indent=1) + "\n")
    finish(results, earlier + [this_run(args, start)], Path(args.out))


def this_run(args: argparse.Namespace, start: float) -> dict[str, Any]:
    """The settings, wall time so far and machine of this invocation."""
    import torch

    return {
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "append", "merge")},
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "cpu": platform.machine()},
    }


def _gain(r: dict[str, Any]) -> float:
    """Test score of the campaign's best by validation minus its best seed's, on the same samples."""
    b, s = r.get("best") or {}, r.get("best_seed") or {}
    return float(b.get("test") or 0.0) - float(s.get("test") or 0.0)


def _ci(ci: Any) -> list[float]:
    return [ci.low, ci.high]


def strategy_summary(searched: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Per suite and strategy (and per strategy over all suites, `suite` "all"), over its
    campaigns: how often a gain was confirmed (exact 95% CI), the mean test gain of its best over
    the best seed, and the mean paired difference with `random` on the same suite and seed (the
    same test samples) at the same budget, each with a seeded 95% CI over campaigns (a percentile
    bootstrap: the campaign is the unit); the mean tokens spent by the search (before the
    confirmation) where the results record it."""
    from agentmeta.eval.stats import bootstrap_ci, clopper_pearson

    rows = []
    random_by = {(r["suite"], r["seed"]): r for r in searched if r["strategy"] == "random"}
    suites = list(dict.fromkeys(r["suite"] for r in searched))
    groups = [(suite, strategy) for suite in suites for strategy in dict.fromkeys(r["strategy"] for r in searched)]
    if len(suites) > 1:
        groups += [("all", strategy) for strategy in dict.fromkeys(r["strategy"] for r in searched)]
    for suite, strategy in groups:
        mine = [r for r in searched if r["strategy"] == strategy and suite in ("all", r["suite"])]
        if not mine:
            continue
        k = sum(bool(r.get("confirmed")) for r in mine)
        gains = [_gain(r) for r in mine]
        paired = [
            _gain(r) - _gain(random_by[(r["suite"], r["seed"])])
            for r in mine
            if strategy != "random" and (r["suite"], r["seed"]) in random_by
        ]
        spends = [r["search_tokens"] for r in mine if "search_tokens" in r]
        row: dict[str, Any] = {
            "suite": suite, "strategy": strategy, "campaigns": len(mine), "confirmed": k,
            "search_tokens_mean": sum(spends) / len(spends) if spends else None, "search_tokens_n": len(spends),
            "confirmed_ci": list(clopper_pearson(k, len(mine))),
            "gain_mean": sum(gains) / len(gains), "gain_ci": _ci(bootstrap_ci(gains, seed=seed)),
            "vs_random_n": len(paired),
        }  # fmt: skip
        if paired:
            row["vs_random_mean"] = sum(paired) / len(paired)
            row["vs_random_ci"] = _ci(bootstrap_ci(paired, seed=seed))
        rows.append(row)
    return rows


def finish(results: list[dict[str, Any]], runs: list[dict[str, Any]], out_path: Path) -> None:
    """Write the results JSON and the plot, print the table and the summary."""
    searched = [r for r in results if r["strategy"] != "seeds"]
    summary = {
        "gain": [f"{r['strategy']} {r['suite']} s{r['seed']}" for r in searched if r.get("confirmed")],
        "saving": [f"{r['strategy']} {r['suite']} s{r['seed']}" for r in searched if r.get("cheaper")],
        "strategies": strategy_summary(searched),
    }
    out = {
        "model": "smollm2 (SmolLM2-135M-Instruct, embedded, CPU)",
        "runs": runs,
        "summary": summary,
        "results": results,
    }
    out_path.write_text(json.dumps(out, indent=1) + "\n")
    plot(searched, out_path.with_suffix(".png"))
    print()
    print(f"{'suite':22} sd {'strategy':10} {'tokens':>7} prop/valid/full {'best by validation':28} val  test/seed tok/s:b/s {'paired diff vs seed':34} verdict")
    for r in searched:
        print(fmt_row(r))
    print(f"\nconfirmed gains: {summary['gain'] or 'none'}; confirmed savings: {summary['saving'] or 'none'}")
    print(f"\n{'suite':22} {'strategy':10} campaigns confirmed [95% CI]   test gain vs best seed [95% CI]   vs random, paired [95% CI]")
    for row in summary["strategies"]:
        lo, hi = row["confirmed_ci"]
        vs = (
            f"{row['vs_random_mean']:+.3f} [{row['vs_random_ci'][0]:+.3f}, {row['vs_random_ci'][1]:+.3f}] n={row['vs_random_n']}"
            if "vs_random_mean" in row
            else "-"
        )
        print(
            f"{row.get('suite', 'all')[:22]:22} {row['strategy']:10} {row['campaigns']:>9} {row['confirmed']}/{row['campaigns']} [{lo:.2f}, {hi:.2f}]"
            f"      {row['gain_mean']:+.3f} [{row['gain_ci'][0]:+.3f}, {row['gain_ci'][1]:+.3f}]        {vs}"
        )
    print(f"wrote {out_path} and {out_path.with_suffix('.png')}")


def merge(paths: list[str], out_path: Path) -> None:
    """Join the results of several runs (e.g. one per suite) into one results file and plot."""
    results: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    for p in paths:
        data = json.loads(Path(p).read_text())
        results += data["results"]
        runs += [{**r, "machine": r.get("machine", data.get("machine"))} for r in data.get("runs", [])]
    finish(results, runs, out_path)


if __name__ == "__main__":
    main()
