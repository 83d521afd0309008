"""Seconds per training step: agentmeta's MetaICL and GRPO loops vs plain TRL scripts, same work.

For each loop, agentmeta's `train_metaicl` / `train_grpo` and a plain TRL script (its own
`SFTConfig`/`GRPOConfig`, `LoraConfig`, dataset and reward function) train the same base model on
the same data with the same settings. Only the optimizer steps are timed (the same
`TrainerCallback` in both: from step begin to step end), so model loading, dataset preparation and
evaluation are excluded. The first step of each run is reported but left out of the mean (one-off
warm-up). Writes bench/results/train.json with the overhead ratio (agentmeta / plain).

    python bench/bench_train.py [--sft-steps 12] [--grpo-steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TRAIN_SUITES = ["rg/basic_arithmetic", "rg/word_sorting"]
GRPO_SUITE = "rg/basic_arithmetic"
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "task_type": "CAUSAL_LM"}  # fmt: skip


def timer() -> Any:
    import transformers

    class Timer(transformers.TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.times.append(time.perf_counter() - self.t0)

    return Timer()


def summary(times: list[float]) -> dict[str, Any]:
    import statistics

    steady = times[1:] or times
    return {
        "steps": len(times),
        "step_s": times,
        "s_per_step": sum(steady) / len(steady),
        "s_per_step_median": statistics.median(steady),
    }


def add_ratios(results: dict[str, Any]) -> None:
    """Overhead ratios (agentmeta / plain) of the means and of the medians (robust to load spikes)."""
    for r in results.values():
        a, b = r["agentmeta"], r["plain_trl"]
        r["overhead_ratio"] = a["s_per_step"] / b["s_per_step"]
        r["overhead_ratio_median"] = a["s_per_step_median"] / b["s_per_step_median"]
        r["within_10pct"] = r["overhead_ratio"] <= 1.10
        r["within_10pct_median"] = r["overhead_ratio_median"] <= 1.10


def plain_args(cls: Any, out: str, **kw: Any) -> Any:
    import torch

    cpu = {} if torch.cuda.is_available() else {"use_cpu": True, "bf16": False, "fp16": False}
    return cls(output_dir=out, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
               seed=0, lr_scheduler_type="constant", warmup_steps=0, **cpu, **kw)  # fmt: skip


def plain_sft(
    base: str, rows: list[dict[str, Any]], steps: int, batch: int, max_length: int, lr: float
) -> list[float]:
    import datasets
    import peft
    import transformers
    import trl

    tok = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    t = timer()
    with tempfile.TemporaryDirectory() as d:
        trainer = trl.SFTTrainer(
            model=model,
            args=plain_args(
                trl.SFTConfig,
                d,
                max_steps=steps,
                learning_rate=lr,
                per_device_train_batch_size=batch,
                max_length=max_length,
                completion_only_loss=True,
            ),  # fmt: skip
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tok,
            peft_config=peft.LoraConfig(**LORA),
            callbacks=[t],
        )
        trainer.train()
    return t.times


def plain_grpo(base: str, limit: int, steps: int, gens: int, max_new: int, lr: float) -> list[float]:
    import datasets
    import peft
    import transformers
    import trl

    from agentmeta.eval.suites import load_suite
    from agentmeta.prompts import render

    suite = load_suite(GRPO_SUITE, split="train", limit=limit, seed=0)
    by_id = {s.id: s for s in suite.samples}

    def score(prompts: list[Any], completions: list[Any], sample_id: list[str], **kw: Any) -> list[float]:
        return [
            suite.score(c[-1]["content"], by_id[i]).value for c, i in zip(completions, sample_id, strict=True)
        ]

    rows = [{"prompt": [{"role": "user", "content": render("eval-direct", input=s.input)}], "sample_id": s.id}
            for s in suite.samples]  # fmt: skip
    tok = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    t = timer()
    with tempfile.TemporaryDirectory() as d:
        trainer = trl.GRPOTrainer(
            model=model,
            reward_funcs=[score],
            args=plain_args(
                trl.GRPOConfig,
                d,
                max_steps=steps,
                learning_rate=lr,
                per_device_train_batch_size=gens,
                num_generations=gens,
                max_completion_length=max_new,
                reward_weights=[1.0],
            ),  # fmt: skip
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=tok,
            peft_config=peft.LoraConfig(**LORA),
            callbacks=[t],
        )
        trainer.train()
    return t.times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sft-steps", type=int, default=12)
    ap.add_argument("--grpo-steps", type=int, default=8)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    ap.add_argument(
        "--summarize-only", action="store_true", help="Recompute the summaries of --out from its step times."
    )
    args = ap.parse_args()
    if args.summarize_only:
        data = json.loads(Path(args.out).read_text())
        loops = {k: data[k] for k in ("metaicl", "grpo") if k in data}
        for r in loops.values():
            r["agentmeta"], r["plain_trl"] = (
                summary(r["agentmeta"]["step_s"]),
                summary(r["plain_trl"]["step_s"]),
            )
        add_ratios(loops)
        Path(args.out).write_text(json.dumps(data, indent=2) + "\n")
        report(loops, args.out)
        return
    load_before = os.getloadavg()[0]

    import torch
    import trl

    from agentmeta.eval.suites import load_suite
    from agentmeta.train.common import load_base, resolve_base
    from agentmeta.train.grpo import GRPOConfig, train_grpo
    from agentmeta.train.metaicl import MetaICLConfig, build_episodes, token_length, train_metaicl

    base = resolve_base(None)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    results: dict[str, Any] = {}
    try:
        # MetaICL: the plain script trains on the very episodes agentmeta builds (same seed, same texts).
        n_samples = 16
        tasks = {s: load_suite(s, split="train", limit=n_samples, seed=0).samples for s in TRAIN_SUITES}
        _, tok = load_base(base)
        episodes = build_episodes(
            tasks, args.k, args.sft_steps * args.batch, args.max_length, token_length(tok)
        )
        rows = [{"prompt": [{"role": "user", "content": e.prompt}],
                 "completion": [{"role": "assistant", "content": e.completion}]} for e in episodes]  # fmt: skip
        plain = plain_sft(base, rows, args.sft_steps, args.batch, args.max_length, 1e-4)
        t = timer()
        train_metaicl(MetaICLConfig(train_suites=TRAIN_SUITES, eval_suites=[], output=work / "metaicl", k=args.k,
                                    steps=args.sft_steps, samples_per_suite=n_samples, learning_rate=1e-4,
                                    batch_size=args.batch, max_length=args.max_length), callbacks=[t])  # fmt: skip
        results["metaicl"] = {"agentmeta": summary(t.times), "plain_trl": summary(plain)}
        # GRPO: agentmeta first this time, so neither side always runs on a warmer machine.
        t = timer()
        train_grpo(GRPOConfig(suite=GRPO_SUITE, output=work / "grpo", steps=args.grpo_steps, train_limit=16,
                              eval_limit=0, learning_rate=1e-5, num_generations=args.generations,
                              max_new_tokens=args.max_new_tokens), callbacks=[t])  # fmt: skip
        plain = plain_grpo(base, 16, args.grpo_steps, args.generations, args.max_new_tokens, 1e-5)
        results["grpo"] = {"agentmeta": summary(t.times), "plain_trl": summary(plain)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    add_ratios(results)
    out = {
        "model": "smollm2 (SmolLM2-135M-Instruct, dense copy)",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "trl": trl.__version__,
        "settings": {
            "batch": args.batch,
            "k": args.k,
            "max_length": args.max_length,
            "lora": LORA,
            "grpo_generations": args.generations,
            "grpo_max_new_tokens": args.max_new_tokens,
        },  # fmt: skip
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0], "cpus": os.cpu_count()},
        "timing": "optimizer steps only (TrainerCallback step begin -> end); mean excludes the first step",
        **results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if Path(args.out).is_file():  # bench_distill.py's quality section stays
        kept = json.loads(Path(args.out).read_text()).get("distill")
        if kept is not None:
            out["distill"] = kept
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    report(results, args.out)


def report(results: dict[str, Any], out: str) -> None:
    for name, r in results.items():
        print(f"{name:8s} agentmeta {r['agentmeta']['s_per_step']:.2f} s/step  plain TRL "
              f"{r['plain_trl']['s_per_step']:.2f} s/step  ratio {r['overhead_ratio']:.3f} "
              f"(medians: ratio {r['overhead_ratio_median']:.3f})")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
