"""DSPy's optimizers on the search benchmark's work: the same suite, samples, model and scorer.

DSPy 3.4 runs as its users run it: a `dspy.ChainOfThought("question -> answer")` program, its LM
through litellm against `transformers serve --continuous-batching` serving the embedded model's
dense weights (started here on 127.0.0.1 unless `--base-url` names a running server), optimized by

- `bfrs`: BootstrapFewShotWithRandomSearch (demonstration sets bootstrapped from the train split,
  chosen by validation score; `--candidates` programs),
- `mipro`: MIPROv2 with `auto="light"` (instructions and demonstration sets, chosen by Optuna's TPE),
- `gepa`: GEPA (`dspy.GEPA`, the `gepa` package): reflective instruction evolution with per-sample
  Pareto parents and merges, the same model reflecting (as `agentmeta search --strategy prompt` runs
  it), feedback "Correct." or "Wrong. The expected answer is ..." on train samples, and a budget of
  `--gepa-calls` metric calls (default: `auto="light"`),

on the campaign's samples for each seed: the train split (`--train`), the validation samples of
the full stage (`--val`, the first of the seeded validation split, as `agentmeta search` uses) and
the confirmation's test samples (`--test`, the seeded test split, as `agentmeta confirm` uses),
scored by the suite's own scorer. The 135M model often writes replies DSPy's adapters cannot parse;
with DSPy's default `max_errors` the optimizer aborts after ten ("Execution cancelled due to errors
or interruption"), so `--max-errors` is raised and an unparseable reply scores 0: the table says
how many there were. Tokens are litellm's usage counts of every call (the optimizer's search, then
the test evaluation apart). Per-sample test scores are kept, so the results pair with
`bench_search.py`'s campaigns on the same suite and seed.

Needs the `peers` extra (`pip install -c constraints/cpu.txt -e '.[peers]'`). Run it alone on the
machine. Prints a table and writes bench/results/search-dspy.json:

    python bench/bench_dspy.py [--suite S] [--seeds 0,1] [--optimizers bfrs,mipro,gepa] [--append]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("LITELLM_LOG", "ERROR")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # litellm's bundled model map: no download

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
MAIN_SUITE = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"


def usage(lm: Any, start: int) -> int:
    """Tokens (prompt + completion) of the LM's calls from history entry `start` on."""
    total = 0
    for entry in lm.history[start:]:
        u = entry.get("usage") or {}
        total += int(u.get("prompt_tokens") or 0) + int(u.get("completion_tokens") or 0)
    return total


def run_one(optimizer: str, suite_spec: str, seed: int, lm: Any, args: argparse.Namespace) -> dict[str, Any]:
    import dspy

    from agentmeta.eval import load_suite
    from agentmeta.eval.stats import mean_ci

    train = load_suite(suite_spec, split="train", limit=args.train, seed=seed)
    val = load_suite(suite_spec, split="validation", limit=args.val, seed=seed)
    test = load_suite(suite_spec, split="test", limit=args.test, seed=seed)
    by_id = {s.id: s for s in [*train.samples, *val.samples, *test.samples]}

    def examples(suite: Any) -> list[Any]:
        return [dspy.Example(question=s.input, answer=s.target, sample_id=s.id).with_inputs("question")
                for s in suite.samples]  # fmt: skip

    def metric(example: Any, pred: Any, trace: Any = None) -> float:
        answer = str(getattr(pred, "answer", "") or "")
        return float(val.score(answer, by_id[example.sample_id]).value)

    def feedback_metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        score = metric(gold, pred)
        text = "Correct." if score >= 1.0 else f"Wrong. The expected answer is {gold.answer}."
        return dspy.Prediction(score=score, feedback=text)

    program = dspy.ChainOfThought("question -> answer")
    common = {"metric": metric, "num_threads": args.threads, "max_errors": args.max_errors}
    start, t0 = len(lm.history), time.perf_counter()
    if optimizer == "bfrs":
        opt = dspy.BootstrapFewShotWithRandomSearch(
            **common, max_bootstrapped_demos=4, max_labeled_demos=4, num_candidate_programs=args.candidates
        )
        best = opt.compile(program, trainset=examples(train), valset=examples(val))
    elif optimizer == "mipro":
        opt = dspy.MIPROv2(**common, auto="light", seed=seed)
        best = opt.compile(program, trainset=examples(train), valset=examples(val), requires_permission_to_run=False)
    elif optimizer == "gepa":
        budget = {"max_metric_calls": args.gepa_calls} if args.gepa_calls else {"auto": "light"}
        opt = dspy.GEPA(metric=feedback_metric, reflection_lm=lm, num_threads=args.threads, seed=seed,
                        track_stats=False, **budget)  # fmt: skip
        best = opt.compile(program, trainset=examples(train), valset=examples(val))
    else:
        raise SystemExit(f"unknown optimizer {optimizer!r}: bfrs, mipro or gepa")
    search_tokens, search_s = usage(lm, start), time.perf_counter() - t0

    def on_test(prog: Any) -> tuple[dict[str, float], int]:
        start = len(lm.history)
        evaluate = dspy.Evaluate(devset=examples(test), metric=metric, num_threads=args.threads,
                                 max_errors=args.max_errors, display_progress=False)  # fmt: skip
        result = evaluate(prog)
        scores = {ex.sample_id: float(score) for ex, _pred, score in result.results}
        return scores, usage(lm, start)

    scores, test_tokens = on_test(best)
    zero, _ = on_test(program)
    k = sum(scores.values())
    ci = mean_ci(list(scores.values()), seed=seed)  # exact for 0/1 scores, as agentmeta's own results
    low, high = ci.low, ci.high
    demos = sum(len(getattr(p, "demos", []) or []) for _name, p in best.named_predictors())
    return {
        "strategy": f"dspy-{optimizer}", "suite": suite_spec, "seed": seed,
        "search_tokens": search_tokens, "search_s": round(search_s, 1),
        "test": k / len(scores), "test_ci": [low, high], "test_n": len(scores), "test_tokens": test_tokens,
        "test_scores": scores, "zero_shot_test": sum(zero.values()) / len(zero), "zero_shot_scores": zero,
        "demos": demos, "max_errors": args.max_errors,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=MAIN_SUITE)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--optimizers", default="bfrs")
    ap.add_argument("--train", type=int, default=32)
    ap.add_argument("--val", type=int, default=32)
    ap.add_argument("--test", type=int, default=64)
    ap.add_argument("--candidates", type=int, default=16, help="BootstrapFewShotWithRandomSearch's programs")
    ap.add_argument("--gepa-calls", type=int, help="GEPA's budget in metric calls (default: auto='light')")
    ap.add_argument("--max-errors", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--base-url", help="a running OpenAI-compatible server of the model (default: start one)")
    ap.add_argument("--blocks", type=int, default=512, help="transformers serve --cb-num-blocks")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search-dspy.json"))
    ap.add_argument("--append", action="store_true")
    args = ap.parse_args()

    import dspy

    from agentmeta.models.hf import dense_dir

    server = None
    dense = str(dense_dir())
    if args.base_url is None:
        from bench_eval import Server

        server = Server(dense, Path(tempfile.mkdtemp(prefix="bench-dspy-")) / "serve.log", args.blocks)
        args.base_url = server.url
    lm = dspy.LM(f"openai/{dense}", api_base=args.base_url, api_key="none", temperature=0.0,
                 max_tokens=args.max_tokens, cache=False)  # fmt: skip
    dspy.configure(lm=lm)
    results: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    if args.append and Path(args.out).is_file():
        old = json.loads(Path(args.out).read_text())
        results, runs = old["results"], old.get("runs", [])
    start = time.perf_counter()
    try:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for optimizer in args.optimizers.split(","):
                print(f"{args.suite} seed {seed}: dspy {optimizer}", flush=True)
                row = run_one(optimizer, args.suite, seed, lm, args)
                results.append(row)
                print(f"  test {row['test']:.2f} [{row['test_ci'][0]:.2f}, {row['test_ci'][1]:.2f}] "
                      f"(zero-shot {row['zero_shot_test']:.2f}), {row['search_tokens']:,} search tokens, "
                      f"{row['demos']} demos", flush=True)  # fmt: skip
                Path(args.out).write_text(json.dumps({"partial": True, "results": results}, indent=1) + "\n")
    finally:
        if server is not None:
            server.stop()
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "append", "base_url")}
    runs.append({"settings": settings, "wall_s": round(time.perf_counter() - start, 1), "dspy": dspy.__version__,
                 "machine": {"cpus": os.cpu_count(), "cpu": platform.machine()}})  # fmt: skip
    out = {"model": "SmolLM2-135M-Instruct (dense weights) via transformers serve", "runs": runs, "results": results}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"\n{'suite':22} sd {'optimizer':12} {'search tok':>10} {'test [95% CI]':20} zero-shot demos")
    for r in results:
        print(f"{r['suite'][:22]:22} {r['seed']:>2} {r['strategy']:12} {r['search_tokens']:>10,} "
              f"{r['test']:.2f} [{r['test_ci'][0]:.2f}, {r['test_ci'][1]:.2f}]     {r['zero_shot_test']:.2f}      {r['demos']}")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
