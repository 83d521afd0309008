"""The seeds' methods on the embedded model: each against the best seed on the same test samples.

For each suite: the graph seeds `cot` and `program_of_thought` run on the first `--val` validation
samples and the better one is the *best seed* (selection on validation only). Then, on the first
`--test` test samples, paired against the best seed:

- `bandit`: a bandit node over cot, program-of-thought and a direct answer (Thompson sampling),
  its statistics learned on `--learn` train samples with the suite's scorer, then frozen;
- `tree_search`: the cot seed's call as an AB-MCTS tree search over `--tree-n` answers, verified
  by agreement (no target);
- `bootstrap`: the best seed's call shown its own solved train outputs (one draw, k=3);
- `reprompt`: the same draw improved by Reprompting's Gibbs rounds over the train split.

Per method: test score, paired difference with the best seed (Tango interval), tokens per sample
(test) and the tokens its preparation spent on train samples. Results: bench/results/adaptive.json.
The meta-prompt policy (`--meta-prompt evolve`) needs whole campaigns and is not measured here.

    python bench/bench_adaptive.py --suites MAIN,rg/gcd
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MAIN_SUITE = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"


def tokens(result: Any) -> float:
    recs = result.records
    return sum(r.prompt_tokens + r.completion_tokens for r in recs) / max(len(recs), 1)


def run_suite(suite_spec: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from agentmeta import get_model
    from agentmeta.agents import find_seed
    from agentmeta.agents.graph import GraphAgent, parse_spec
    from agentmeta.archive import Archive
    from agentmeta.eval import Suite, evaluate, load_suite
    from agentmeta.eval.stats import mean_ci, paired_ci
    from agentmeta.models.base import Model
    from agentmeta.models.cache import CallCache
    from agentmeta.search import Campaign, SearchConfig
    from agentmeta.search.adaptive import learn_bandit
    from agentmeta.search.bootstrap import bootstrap_slot

    base = get_model(cache=False)
    key = hashlib.sha256(suite_spec.encode()).hexdigest()[:12]
    model = Model(base.provider, cache=CallCache(work / f"calls-{key}.sqlite"))
    val = load_suite(suite_spec, split="validation", limit=args.val)
    test = load_suite(suite_spec, split="test", limit=args.test)
    train = load_suite(suite_spec, split="train", limit=200)

    def run(agent: Any, suite: Suite) -> Any:
        return evaluate(agent, suite, model=model, seed=0, concurrency=args.concurrency)

    seeds = {name: find_seed(f"graph/{name}") for name in ("cot", "program_of_thought")}
    on_val = {name: run(GraphAgent.from_source(s.source), val) for name, s in seeds.items()}
    best = max(on_val, key=lambda n: (on_val[n].mean, n == "cot"))
    print(f"{suite_spec}: validation " + ", ".join(f"{n} {r.mean:.3f}" for n, r in on_val.items()) + f" -> {best}")

    spent: dict[str, float] = {}

    def train_eval(name: str):
        def ev(spec: Any, samples: list[Any]) -> Any:
            res = evaluate(GraphAgent.from_source(spec.source), Suite(name="train", samples=samples, scorer=train.scorer),
                           model=model, seed=0, concurrency=args.concurrency)  # fmt: skip
            spent[name] = spent.get(name, 0.0) + sum(r.prompt_tokens + r.completion_tokens for r in res.records)
            return res

        return ev

    methods: dict[str, Any] = {}
    ctx = SimpleNamespace(kind="graph", evaluate=train_eval("bandit"), train_samples=list(train.samples))
    bandit = parse_spec({"name": "bandit", "nodes": [{"id": "b", "type": "bandit", "policy": "thompson",
                                                      "arms": ["cot", "program_of_thought", "direct"]}]})  # fmt: skip
    methods["bandit"], info = learn_bandit(ctx, bandit, 0, random.Random(0), samples=args.learn)
    print(f"  bandit statistics: {info['stats']}")
    cot = parse_spec(seeds["cot"].source)
    node = cot.nodes[0].model_dump(mode="json")
    methods["tree_search"] = cot.model_copy(update={"nodes": [parse_spec({"nodes": [
        {**node, "type": "tree_search", "n": args.tree_n, "verifier": "agreement"}]}).nodes[0]]})  # fmt: skip
    for how in ("bootstrap", "reprompt"):
        config = SearchConfig(suite=suite_spec, kind="graph", strategy="bayes", seeds=[f"graph/{best}"], iterations=0,
                              confirm=False, concurrency=args.concurrency, demos=how)  # fmt: skip
        pctx = Campaign(config, Archive(work / f"{how}.db"), model=model, meta_model=model)._context(0)
        pctx.evaluate = train_eval(how)
        try:
            child, info = bootstrap_slot(pctx, seeds[best], 0, random.Random(0), k=3, pool=8)
            methods[how] = parse_spec(child.source)
        except Exception as e:  # noqa: BLE001 - a method that cannot make a candidate is reported, not fatal
            print(f"  {how}: {e}")

    rows = []
    ref = run(GraphAgent.from_source(seeds[best].source), test)
    ref_scores = {r.id: r.score for r in ref.records}
    ci = mean_ci([r.score for r in ref.records])
    rows.append({"method": f"best seed ({best})", "test": ref.mean, "ci": [ci.low, ci.high], "tokens": tokens(ref),
                 "train_tokens": 0, "n": len(ref.records)})  # fmt: skip
    for name, graph in methods.items():
        start = time.perf_counter()
        res = run(GraphAgent(graph), test)
        ids = [r.id for r in res.records if r.id in ref_scores]
        by_id = {r.id: r.score for r in res.records}
        cmp = paired_ci([by_id[i] for i in ids], [ref_scores[i] for i in ids])
        ci = mean_ci([r.score for r in res.records])
        rows.append({"method": name, "test": res.mean, "ci": [ci.low, ci.high], "tokens": tokens(res),
                     "train_tokens": spent.get(name, 0.0), "n": len(ids), "diff": cmp.mean_diff,
                     "diff_ci": [cmp.low, cmp.high], "p_better": cmp.p_better,
                     "wall_s": round(time.perf_counter() - start, 1)})  # fmt: skip
        r = rows[-1]
        print(f"  {name:12s} test {r['test']:.3f}  diff {r['diff']:+.3f} [{r['diff_ci'][0]:+.3f}, {r['diff_ci'][1]:+.3f}]"
              f"  tok/sample {r['tokens']:.0f}  train tokens {r['train_tokens']:.0f}", flush=True)  # fmt: skip
    return {"suite": suite_spec, "best_seed": best, "validation": {n: r.mean for n, r in on_val.items()}, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default=f"{MAIN_SUITE},rg/gcd")
    ap.add_argument("--val", type=int, default=32)
    ap.add_argument("--test", type=int, default=64)
    ap.add_argument("--learn", type=int, default=16)
    ap.add_argument("--tree-n", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--work", help="folder of the call caches (a rerun with the same one replays its calls)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "adaptive.json"))
    args = ap.parse_args()
    import torch

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-adaptive-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    for suite in [s.replace("MAIN", MAIN_SUITE) for s in args.suites.split(",") if s]:
        results.append(run_suite(suite, args, work))
        out = {"model": "smollm2 (embedded)", "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
               "wall_s": round(time.perf_counter() - start, 1),
               "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "cpu": platform.machine()},
               "results": results}  # fmt: skip
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print("| suite | method | test [95% CI] | vs best seed, paired [95% CI] | tokens/sample | train tokens |")
    print("| --- | --- | --- | --- | ---: | ---: |")
    for res in results:
        for r in res["rows"]:
            diff = f"{r['diff']:+.3f} [{r['diff_ci'][0]:+.3f}, {r['diff_ci'][1]:+.3f}]" if "diff" in r else "-"
            print(f"| {res['suite'].split('?')[0]} | {r['method']} | {r['test']:.3f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] "
                  f"| {diff} | {r['tokens']:.0f} | {r['train_tokens']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
