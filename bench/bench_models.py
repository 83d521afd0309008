"""Overhead of the batcher on the embedded model: the batcher vs the same engine driven directly.

All three paths run the same 16 requests (same prompts, seeds and max_tokens, greedy, no call
cache) on one loaded `HFProvider`, so they differ only in how the requests reach the engine:

(a) batcher: 16 concurrent callers, each sending its request through `Model.generate`, which
    gathers them into batches for `HFProvider.generate_batch`.
(b) direct: one `HFProvider.generate_batch` call with the 16 requests (the engine, no batcher).
(c) one at a time: the same 16 callers through a `Model` without batching, so the engine runs one
    request per call (what a harness without batching gets).

The paths are interleaved and their order rotates each repeat (a b c, b c a, c a b, ...), so a
slow spell of the machine does not land on one path. Per path it reports the median and the
spread (min, max, quartiles) of tokens/s over the repeats; a/b is computed within each repeat and
summarized the same way: a/b near 1 means the batcher costs nothing over driving the engine
directly. Prints a table and writes bench/results/models.json.

    python bench/bench_models.py [--repeats 5] [--callers 16] [--new-tokens 64]
    python bench/bench_models.py --quick       # 1 repeat, 8 tokens: a smoke run (not written)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TOPICS = [
    "a dragon",
    "the sea",
    "a robot",
    "a city",
    "a forest",
    "winter",
    "a train",
    "the moon",
    "a library",
    "a storm",
    "a garden",
    "a castle",
    "a desert",
    "a river",
    "a market",
    "a clock",
]

PATHS = {
    "a": ("batcher_concurrent_callers", "(a) batcher, concurrent callers"),
    "b": ("direct_generate_batch", "(b) direct generate_batch"),
    "c": ("unbatched_one_at_a_time", "(c) one request at a time"),
}


def requests(k: int, new_tokens: int) -> list[Any]:
    from agentmeta.models import GenerateRequest

    return [
        GenerateRequest.build(
            f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}.", max_tokens=new_tokens, seed=i
        )
        for i in range(k)
    ]


def run_callers(model: Any, reqs: list[Any]) -> tuple[float, list[Any]]:
    """Wall time from the moment all callers are released to the last answer; the responses."""
    released: list[float] = []
    barrier = threading.Barrier(len(reqs), action=lambda: released.append(time.perf_counter()))
    out: list[Any] = [None] * len(reqs)
    errors: list[BaseException] = []

    def call(i: int) -> None:
        barrier.wait()
        try:
            out[i] = model.generate(reqs[i])
        except BaseException as e:  # noqa: BLE001 - reported after the join
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(reqs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = time.perf_counter()
    if errors:
        raise errors[0]
    return end - released[0], out


def run_path(key: str, provider: Any, models: dict[str, Any], reqs: list[Any]) -> dict[str, Any]:
    before = provider.backend_calls
    batches_before = len(models["a"]._batcher.batch_sizes)
    if key == "b":
        start = time.perf_counter()
        resps = provider.generate_batch(reqs)
        wall = time.perf_counter() - start
    else:
        wall, resps = run_callers(models[key], reqs)
    tokens = sum(sum(r.completion_tokens) for r in resps)
    row: dict[str, Any] = {
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "backend_calls": provider.backend_calls - before,
        "texts": [r.text for r in resps],
    }
    if key == "a":
        row["batch_sizes"] = models["a"]._batcher.batch_sizes[batches_before:]
    return row


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and quartiles (the quartiles equal the median for fewer than 2 values)."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": q1,
        "q3": q3,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    tps = spread([r["tokens_per_s"] for r in runs])
    wall = spread([r["wall_s"] for r in runs])
    out: dict[str, Any] = {
        "tokens": runs[0]["tokens"],
        "wall_s": wall["median"],
        "tokens_per_s": tps["median"],
        "tokens_per_s_spread": tps,
        "wall_s_spread": wall,
        "backend_calls": runs[0]["backend_calls"],
        "runs": [{k: v for k, v in r.items() if k != "texts"} for r in runs],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds of (a, b, c), order rotated (default 5)")
    ap.add_argument("--callers", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 1 repeat of 8 new tokens; writes only with --out"
    )
    ap.add_argument("--out", default=None, help="result file (default bench/results/models.json)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.new_tokens = 1, 8
    elif args.out is None:
        args.out = str(Path(__file__).parent / "results" / "models.json")
    if args.repeats < 1 or args.callers < 1 or args.new_tokens < 1:
        ap.error("--repeats, --callers and --new-tokens must be >= 1")

    load_start = os.getloadavg()
    import torch

    from agentmeta.models import Model
    from agentmeta.models.hf import embedded_provider

    provider = embedded_provider(max_batch=args.callers)
    models = {
        "a": Model(provider, cache=None, batching=True),
        "c": Model(provider, cache=None, batching=False),
    }
    reqs = requests(args.callers, args.new_tokens)
    warm = requests(args.callers, 2)
    for key in PATHS:  # warm-up at full width: first calls pay for allocations and lazy initialisation
        run_path(key, provider, models, warm)

    order = list(PATHS)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in PATHS}
    orders: list[str] = []
    for rep in range(args.repeats):
        this = order[rep % 3 :] + order[: rep % 3]
        orders.append("".join(this))
        for key in this:
            runs[key].append(run_path(key, provider, models, reqs))
            r = runs[key][-1]
            print(
                f"repeat {rep + 1}/{args.repeats} {key}: {r['tokens']} tokens in {r['wall_s']:.2f} s",
                file=sys.stderr,
            )
    load_end = os.getloadavg()

    ratio_ab = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(runs["a"], runs["b"], strict=True)]
    ratio_ac = [a["tokens_per_s"] / c["tokens_per_s"] for a, c in zip(runs["a"], runs["c"], strict=True)]
    same = {k: all(r["texts"] == runs["b"][i]["texts"] for i, r in enumerate(runs[k])) for k in ("a", "c")}
    result: dict[str, Any] = {
        "model": "smollm2 (SmolLM2-135M-Instruct, dense fp32)",
        "what": "batcher overhead: (a) 16 concurrent callers through Model.generate vs (b) one direct "
        "HFProvider.generate_batch of the same requests, plus (c) one request at a time; same engine, "
        "same requests (seeds, max_tokens, greedy), call cache off, interleaved with rotating order",
        "callers": args.callers,
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "quick": args.quick,
        "orders": orders,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "loadavg_start": list(load_start),
        "loadavg_end": list(load_end),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "same_texts_as_direct": {PATHS[k][0]: v for k, v in same.items()},
    }
    for key, (name, _) in PATHS.items():
        result[name] = summarize(runs[key])
    result["ratio_batcher_vs_direct"] = statistics.median(ratio_ab)
    result["ratio_batcher_vs_direct_spread"] = {**spread(ratio_ab), "per_repeat": ratio_ab}
    result["ratio_batcher_vs_unbatched"] = statistics.median(ratio_ac)
    result["ratio_batcher_vs_unbatched_spread"] = {**spread(ratio_ac), "per_repeat": ratio_ac}

    print(
        f"{'path':<34}{'tokens':>7}{'wall s':>9}{'tok/s':>9}{'min':>9}{'q1':>9}{'q3':>9}{'max':>9}"
        f"{'calls':>7}"
    )
    for name, label in PATHS.values():
        r = result[name]
        s = r["tokens_per_s_spread"]
        print(
            f"{label:<34}{r['tokens']:>7}{r['wall_s']:>9.2f}{s['median']:>9.1f}{s['min']:>9.1f}"
            f"{s['q1']:>9.1f}{s['q3']:>9.1f}{s['max']:>9.1f}{r['backend_calls']:>7}"
        )
    for label, key in (
        ("a/b (batcher / direct)", "ratio_batcher_vs_direct"),
        ("a/c", "ratio_batcher_vs_unbatched"),
    ):
        s = result[key + "_spread"]
        print(
            f"{label:<26} median {s['median']:.3f}  min {s['min']:.3f}  max {s['max']:.3f}  "
            f"IQR {s['q1']:.3f}-{s['q3']:.3f}  over {args.repeats} repeat(s)"
        )
    batch_sizes = [r["batch_sizes"] for r in runs["a"]]
    print(f"batcher batch sizes per repeat: {batch_sizes}")
    print(
        f"same texts as direct: {same}   threads {result['threads']}   cpus {result['cpus_usable']}   "
        f"load {load_start[0]:.2f} -> {load_end[0]:.2f}"
    )
    if args.out is None:
        print("quick smoke run: results not written (give --out to keep them)")
        return
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
