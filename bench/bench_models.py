"""Throughput of the embedded model: raw batched generation, the batcher, and one-at-a-time serving.

(a) raw: transformers `model.generate` on a padded batch of 16 prompts, 64 new tokens each.
(b) batcher: 16 concurrent callers, each sending single requests through `Model` (batched).
(c) unbatched: the same 16 callers served one request at a time (what a harness without
    batching gets).
Prints a table and writes bench/results/models.json with ratio_batcher_vs_raw (b/a) and
ratio_batcher_vs_unbatched (b/c).

    python bench/bench_models.py [--callers 16] [--new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TOPICS = ["a dragon", "the sea", "a robot", "a city", "a forest", "winter", "a train", "the moon",
          "a library", "a storm", "a garden", "a castle", "a desert", "a river", "a market", "a clock"]


def prompts(k: int) -> list[str]:
    return [f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}." for i in range(k)]


def bench_raw(provider, texts: list[str], new_tokens: int) -> dict:
    import torch

    tok, model = provider.tokenizer, provider.model
    chats = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
             for t in texts]
    tok.padding_side = "left"
    enc = tok(chats, return_tensors="pt", padding=True, add_special_tokens=False)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=provider.pad_id)
    wall = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1]:]
    tokens = int(sum(int((row != provider.pad_id).sum()) for row in new))
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


def bench_callers(model, texts: list[str], new_tokens: int) -> dict:
    barrier = threading.Barrier(len(texts))
    counts = [0] * len(texts)

    def call(i: int) -> None:
        barrier.wait()
        counts[i] = sum(model.generate(texts[i], max_tokens=new_tokens).completion_tokens)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
    before = model.backend_calls
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = sum(counts)
    return {"tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall,
            "backend_calls": model.backend_calls - before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--callers", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "models.json"))
    args = ap.parse_args()

    import torch

    from agentmeta.models import Model
    from agentmeta.models.hf import embedded_provider

    provider = embedded_provider(max_batch=args.callers)
    texts = prompts(args.callers)
    bench_raw(provider, texts[:2], 4)  # warm-up
    raw = bench_raw(provider, texts, args.new_tokens)
    batched = bench_callers(Model(provider, batching=True), texts, args.new_tokens)
    unbatched = bench_callers(Model(provider, batching=False), texts, args.new_tokens)
    result = {
        "model": "smollm2 (SmolLM2-135M-Instruct, dense fp32)",
        "callers": args.callers,
        "new_tokens": args.new_tokens,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "raw_batched_generate": raw,
        "batcher_concurrent_callers": batched,
        "unbatched_one_at_a_time": unbatched,
        "ratio_batcher_vs_raw": batched["tokens_per_s"] / raw["tokens_per_s"],
        "ratio_batcher_vs_unbatched": batched["tokens_per_s"] / unbatched["tokens_per_s"],
    }
    print(f"{'mode':<34}{'tokens':>8}{'wall s':>9}{'tok/s':>9}")
    for name, key in [("(a) raw model.generate, batch", "raw_batched_generate"),
                      ("(b) batcher, concurrent callers", "batcher_concurrent_callers"),
                      ("(c) one request at a time", "unbatched_one_at_a_time")]:
        r = result[key]
        print(f"{name:<34}{r['tokens']:>8}{r['wall_s']:>9.2f}{r['tokens_per_s']:>9.1f}")
    print(f"b/a = {result['ratio_batcher_vs_raw']:.2f}   b/c = {result['ratio_batcher_vs_unbatched']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
