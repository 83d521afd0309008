"""Evaluation throughput: samples/s of the `cot` agent on the embedded model, concurrency 1 vs 16.

Both runs evaluate the same samples of one suite in one process, with the disk call cache off, so
the only difference is how many samples run at once (the model layer batches concurrent calls).
Prints a table and writes bench/results/eval.json with the ratio (target: >= 3x).

    python bench/bench_eval.py [--suite rg/basic_arithmetic] [--n 32] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TARGET_RATIO = 3.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="rg/basic_arithmetic")
    ap.add_argument("--agent", default="cot")
    ap.add_argument("--n", type=int, default=32, help="samples per run")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--max-tokens", type=int, default=64, help="completion cap per call")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "eval.json"))
    args = ap.parse_args()

    import torch

    from agentmeta.eval import evaluate, load_suite
    from agentmeta.models import get_model

    suite = load_suite(args.suite, limit=args.n)
    model = get_model("smollm2", cache=False)
    model.generate("Say hi.", max_tokens=2)  # load and warm up outside the timed runs
    runs = []
    for c in args.concurrency:
        before = model.backend_calls
        start = time.perf_counter()
        res = evaluate(args.agent, suite, model=model, concurrency=c, max_tokens=args.max_tokens)
        wall = time.perf_counter() - start
        runs.append(
            {
                "concurrency": c,
                "samples": res.n,
                "wall_s": wall,
                "samples_per_s": res.n / wall,
                "completion_tokens": res.usage.completion_tokens,
                "backend_calls": model.backend_calls - before,
                "mean": res.mean,
                "ci": [res.ci_low, res.ci_high],
                "errors": res.n_errors,
            }
        )
    base, best = runs[0], runs[-1]
    ratio = best["samples_per_s"] / base["samples_per_s"]
    result = {
        "suite": suite.name,
        "agent": args.agent,
        "samples": len(suite),
        "max_tokens": args.max_tokens,
        "model": "smollm2 (SmolLM2-135M-Instruct, embedded, CPU)",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "runs": runs,
        f"ratio_c{best['concurrency']}_vs_c{base['concurrency']}": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
    }
    print(f"{args.agent} on {suite.name}, {len(suite)} samples, max_tokens {args.max_tokens}")
    print(
        f"{'concurrency':>12}{'wall s':>9}{'samples/s':>11}{'tokens':>8}{'batches':>9}{'score':>7}{'errors':>8}"
    )
    for r in runs:
        print(
            f"{r['concurrency']:>12}{r['wall_s']:>9.1f}{r['samples_per_s']:>11.3f}{r['completion_tokens']:>8}"
            f"{r['backend_calls']:>9}{r['mean']:>7.3f}{r['errors']:>8}"
        )
    print(
        f"speed-up c{best['concurrency']} / c{base['concurrency']}: {ratio:.2f}x (target >= {TARGET_RATIO:.0f}x)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
