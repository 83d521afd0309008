"""Conductor vs `direct` vs `cot` on rg/puzzle24 and rg/word_sorting, on the embedded model.

Same samples for every agent (validation split, seed 0), 95% bootstrap CIs and paired
comparisons (conductor minus each baseline). Prints a table and writes
bench/results/conductor.json.

    python bench/bench_conductor.py [--limit 30] [--max-rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--max-rounds", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--suites", default="rg/puzzle24,rg/word_sorting")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "conductor.json"))
    args = ap.parse_args()

    from agentmeta import evaluate, get_model, load_suite
    from agentmeta.conductor import ConductorAgent, ConductorSpec
    from agentmeta.eval.stats import compare_results

    model = get_model(cache=False)
    conductor = ConductorAgent(
        ConductorSpec(max_rounds=args.max_rounds, max_tokens=args.max_tokens), name="conductor"
    )
    rows, comparisons = [], []
    for spec in args.suites.split(","):
        suite = load_suite(spec, split="validation", limit=args.limit, seed=0)
        results = {}
        for name, agent in (("direct", "direct"), ("cot", "cot"), ("conductor", conductor)):
            start = time.perf_counter()
            res = evaluate(agent, suite, model=model, concurrency=16, seed=0, max_tokens=args.max_tokens)
            results[name] = res
            rows.append(
                {
                    "suite": spec,
                    "agent": name,
                    "n": res.n,
                    "mean": res.mean,
                    "ci_low": res.ci_low,
                    "ci_high": res.ci_high,
                    "errors": res.n_errors,
                    "tokens": res.usage.total_tokens,
                    "wall_s": time.perf_counter() - start,
                }
            )
            print(
                f"{spec:<16}{name:<11}{res.mean:>6.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}] n={res.n} "
                f"errors={res.n_errors} tokens={res.usage.total_tokens}",
                flush=True,
            )
        for base in ("direct", "cot"):
            cmp = compare_results(results["conductor"], results[base], allow_partial=True)  # n: shared
            comparisons.append({"suite": spec, "a": "conductor", "b": base, **cmp.model_dump(mode="json")})
    print()
    print(
        f"{'suite':<16}{'agent':<11}{'n':>4}{'score':>8}  {'95% CI':<16}{'errors':>7}{'tokens':>9}{'wall s':>8}"
    )
    for r in rows:
        print(
            f"{r['suite']:<16}{r['agent']:<11}{r['n']:>4}{r['mean']:>8.3f}  "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]  {r['errors']:>5}{r['tokens']:>9}{r['wall_s']:>8.0f}"
        )
    print()
    for c in comparisons:
        print(
            f"{c['suite']}: conductor - {c['b']}: {json.dumps({k: v for k, v in c.items() if k not in ('suite', 'a', 'b')})}"
        )
    out = {
        "model": "smollm2",
        "limit": args.limit,
        "max_rounds": args.max_rounds,
        "max_tokens": args.max_tokens,
        "results": rows,
        "paired": comparisons,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
