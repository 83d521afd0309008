"""Evaluation throughput here vs through Ray: the same evaluation in this process, on 1 Ray actor and
on 2 Ray actors of a local Ray instance (127.0.0.1), side by side in one run, repeated.

The figure to keep small is Ray's overhead at 1 actor (wall time on 1 actor / wall time here - 1;
target <= 10%): the same model, samples, seed and concurrency, only the samples travel to an actor
and their records back. Two models: the embedded model (CPU-bound: on a 2-core machine 2 actors
cannot go faster, they share the cores), and a model with a fixed latency per call and no CPU cost
(what an OpenAI-compatible server looks like from here), where 2 actors show what a second node
adds. Runs are interleaved (here, 1 actor, 2 actors, then again) so drift hits every mode alike;
actors are started and their models loaded before the timed runs, as the model here is.
Prints a table and writes bench/results/ray.json, with the 1-minute load average after each run
(the machine's other jobs slow a CPU-bound run: compare the best runs too).

    python bench/bench_ray.py [--n 32] [--repeats 3] [--max-tokens 64] [--served-n 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ["AGENTMETA_CALL_CACHE"] = "0"  # every run pays for its calls

ROOT = Path(__file__).resolve().parents[1]
TARGET_OVERHEAD = 0.10
SERVED_LATENCY_S = float(os.environ.get("BENCH_SERVED_LATENCY_S", "0.1"))


def served(request) -> str:  # noqa: ANN001 - a mock script: a function of the request
    """The served model's reply: a fixed wait (the server's latency), then a plain answer."""
    time.sleep(SERVED_LATENCY_S)
    return "The answer is 0."


def _records(result) -> list[tuple]:  # noqa: ANN001
    return [(r.id, r.score, r.answer, r.outcome) for r in result.records]


def bench_model(args, name: str, spec: str, suite, threads: int) -> dict:  # noqa: ANN001
    """Every mode on one model, interleaved; the medians, spreads and the overhead at 1 actor."""
    from agentmeta.eval import evaluate
    from agentmeta.eval.ray_executor import RayExecutor
    from agentmeta.models import get_model

    model = get_model(spec, cache=False)
    env = {"OMP_NUM_THREADS": str(threads), "PYTHONPATH": os.pathsep.join([str(ROOT / "bench"), str(ROOT)])}
    executors = {"local": None}
    for n in (1, 2):  # 0 CPUs reserved: both pools live side by side; threads set by env
        per_actor = {**env, "OMP_NUM_THREADS": str(max(1, threads // n))}
        executors[f"ray-{n}"] = RayExecutor(actors=n, num_cpus=0, env=per_actor)
    warm = suite.model_copy(update={"samples": suite.samples[:2]})
    for ex in executors.values():  # load every model (on every actor) outside the timed runs
        evaluate(args.agent, warm, model=model, concurrency=1, max_tokens=args.max_tokens, executor=ex)
    walls: dict[str, list[float]] = {m: [] for m in executors}
    loads: dict[str, list[float]] = {m: [] for m in executors}
    results = {}
    for rep in range(args.repeats):
        for mode, ex in executors.items():
            start = time.perf_counter()
            res = evaluate(
                args.agent, suite, model=model, concurrency=args.concurrency, seed=rep,
                max_tokens=args.max_tokens, executor=ex,
            )  # fmt: skip
            walls[mode].append(time.perf_counter() - start)
            loads[mode].append(os.getloadavg()[0])  # another job on the machine shows here
            results[(mode, rep)] = res
            print(f"  {name} {mode} run {rep + 1}: {walls[mode][-1]:.2f} s", file=sys.stderr, flush=True)
    for ex in executors.values():
        if ex is not None:
            ex.close()
    n = len(suite.samples)
    modes = []
    for mode, w in walls.items():
        med = statistics.median(w)
        same = all(
            _records(results[(mode, r)]) == _records(results[("local", r)]) for r in range(args.repeats)
        )
        modes.append(
            {
                "mode": mode,
                "actors": 0 if mode == "local" else int(mode.split("-")[1]),
                "wall_s": w,
                "median_wall_s": med,
                "best_wall_s": min(w),
                "load_1min_after_each": loads[mode],
                "spread_s": [min(w), max(w)],
                "samples_per_s": n / med,
                "mean_score": statistics.mean(results[(mode, r)].mean for r in range(args.repeats)),
                "same_records_as_local": same,
            }
        )
    local = modes[0]["median_wall_s"]
    overhead = modes[1]["median_wall_s"] / local - 1
    return {
        "model": name,
        "spec": spec,
        "samples": n,
        "concurrency_per_actor": args.concurrency,
        "modes": modes,
        "ray_overhead_1_actor": overhead,
        "ray_overhead_1_actor_best_runs": modes[1]["best_wall_s"] / modes[0]["best_wall_s"] - 1,
        "speedup_2_actors": local / modes[2]["median_wall_s"],
        "meets_target": overhead <= TARGET_OVERHEAD,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="rg/basic_arithmetic")
    ap.add_argument("--agent", default="cot")
    ap.add_argument("--n", type=int, default=32, help="samples per run, embedded model")
    ap.add_argument("--served-n", type=int, default=256, help="samples per run, served model")
    ap.add_argument("--concurrency", type=int, default=16, help="samples at once, here and per actor")
    ap.add_argument("--max-tokens", type=int, default=64, help="completion cap per call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-embedded", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray.json"))
    args = ap.parse_args()

    from agentmeta.eval import load_suite
    from agentmeta.eval.ray_executor import connect

    ray = connect(None, num_cpus=os.cpu_count())  # a local instance on 127.0.0.1 (see LOOPBACK_ENV)
    import torch

    threads = torch.get_num_threads()
    nodes = [n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]]
    models = []
    if not args.skip_embedded:
        suite = load_suite(args.suite, limit=args.n)
        models.append(bench_model(args, "smollm2 (embedded, CPU)", "smollm2", suite, threads))
    served_suite = load_suite(args.suite, limit=args.served_n)
    label = f"served (fixed {SERVED_LATENCY_S * 1000:.0f} ms per call, no CPU)"
    models.append(bench_model(args, label, "mock/bench_ray:served", served_suite, threads))
    ray.shutdown()

    result = {
        "suite": args.suite,
        "agent": args.agent,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "ray": ray.__version__,
        "ray_nodes": nodes,
        "cpus": os.cpu_count(),
        "threads": threads,
        "cpu": platform.processor() or platform.machine(),
        "target_overhead_1_actor": TARGET_OVERHEAD,
        "models": models,
    }
    print(f"{args.agent} on {args.suite}, concurrency {args.concurrency} per actor, {args.repeats} repeats")
    print(
        f"{'model':<46}{'mode':>7}{'samples':>8}{'median s':>10}{'spread s':>15}{'samples/s':>11}{'same':>6}"
    )
    for m in models:
        for r in m["modes"]:
            lo, hi = r["spread_s"]
            print(
                f"{m['model'][:45]:<46}{r['mode']:>7}{m['samples']:>8}{r['median_wall_s']:>10.2f}"
                f"{f'{lo:.2f}-{hi:.2f}':>15}{r['samples_per_s']:>11.2f}{'yes' if r['same_records_as_local'] else 'no':>6}"
            )
        print(
            f"  Ray overhead at 1 actor: {m['ray_overhead_1_actor']:+.1%} (target <= {TARGET_OVERHEAD:.0%}; "
            f"best runs {m['ray_overhead_1_actor_best_runs']:+.1%}); "
            f"2 actors: {m['speedup_2_actors']:.2f}x of local"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
