"""Score and speed of the embedded model's weight formats, side by side on the main-job suite.

The embedded engine can hold SmolLM2-135M-Instruct's weights as float32 (the reference) or
bfloat16 (half the bytes; on CPUs with AMX or AVX512-BF16, several rows of a decode step cost
about what one row costs). bfloat16 rounds differently, so greedy outputs are not those of
float32: this bench measures what that does to scores, per agent, on the same samples, paired
against float32, with the share of samples whose answer is the same.

    python bench/bench_precision.py                              # main-job suite, test split
    python bench/bench_precision.py --agents cot --limit 8 --out /tmp/p.json   # a smoke run

Writes bench/results/precision.json and prints a table. Calls are not cached (each format runs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAIN_SUITE = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", default=MAIN_SUITE)
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--agents", default="cot,graph/cot,graph/program_of_thought,direct")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="the first is the reference")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "precision.json"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from agentmeta.eval import evaluate, load_suite
    from agentmeta.eval.stats import paired_ci
    from agentmeta.models import get_model

    agents = [a for a in args.agents.split(",") if a]
    dtypes = [d for d in args.dtypes.split(",") if d]
    suite = load_suite(args.suite, split=args.split, limit=args.limit)
    results: dict[str, dict[str, Any]] = {d: {} for d in dtypes}
    for dtype in dtypes:
        model = get_model("smollm2", cache=False, dtype=dtype)
        for agent in agents:
            t = time.perf_counter()
            r = evaluate(agent, suite, model=model, concurrency=args.concurrency)
            wall = time.perf_counter() - t
            results[dtype][agent] = {
                "mean": r.mean,
                "ci": [r.ci_low, r.ci_high],
                "n": len(r.records),
                "wall_s": wall,
                "completion_tokens": sum(x.completion_tokens for x in r.records),
                "scores": {x.id: x.score for x in r.records},
                "answers": {x.id: x.answer for x in r.records},
            }
            print(f"{dtype:9s} {agent:28s} {r.mean:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] {wall:6.1f} s", flush=True)
        model.close()
    ref = dtypes[0]
    rows = []
    for dtype in dtypes[1:]:
        for agent in agents:
            a, b = results[dtype][agent], results[ref][agent]
            ids = sorted(b["scores"])
            cmp = paired_ci([a["scores"][i] for i in ids], [b["scores"][i] for i in ids], seed=0)
            same = sum(a["answers"][i] == b["answers"][i] for i in ids) / len(ids)
            rows.append(
                {
                    "dtype": dtype,
                    "agent": agent,
                    "mean": a["mean"],
                    "reference_mean": b["mean"],
                    "diff": cmp.mean_diff,
                    "diff_ci": [cmp.low, cmp.high],
                    "p_better": cmp.p_better,
                    "same_answer_share": same,
                    "wall_s": a["wall_s"],
                    "reference_wall_s": b["wall_s"],
                }
            )
    print(f"\n{'format':9s} {'agent':28s} {'score':>6s} {'float32':>7s} {'diff [95% CI]':>24s} {'same':>5s} {'wall':>6s} {'f32':>6s}")
    for r in rows:
        print(
            f"{r['dtype']:9s} {r['agent']:28s} {r['mean']:6.3f} {r['reference_mean']:7.3f} "
            f"{r['diff']:+.3f} [{r['diff_ci'][0]:+.3f}, {r['diff_ci'][1]:+.3f}] {r['same_answer_share']:5.2f} "
            f"{r['wall_s']:6.1f} {r['reference_wall_s']:6.1f}"
        )
    out = {
        "what": "score of each agent on the embedded model per weight format, paired against the first "
        "(float32, the reference) on the same samples; same_answer_share: samples with the identical answer",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "suite": args.suite,
        "split": args.split,
        "limit": args.limit,
        "concurrency": args.concurrency,
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "comparisons": rows,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
