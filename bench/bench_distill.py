"""Does a training loop improve a score? Distillation of the main job's winner, on the embedded model.

1. The README's main job: an `evolve` campaign (seeds cot and program_of_thought, one iteration,
   seed 0) on the main suite; its best candidate by validation is the teacher.
2. `train_distill`: the teacher's scorer-verified traces on the train split, without its
   demonstrations, fine-tuned into a LoRA adapter.
3. On the same test samples: the student (the teacher without demonstrations) on the base model
   and on the adapter (paired), and the teacher, each with its tokens per sample.

Writes the `distill` section of bench/results/train.json, beside bench_train.py's timing (the
quality table: before/after on test with CIs, tokens per sample, wall time). `--from-adapter DIR`
records a finished `agentmeta train distill` run from its adapter metadata instead of training again
(`--note` says how it was run).

    python bench/bench_distill.py [--steps 40] [--train-limit 79]
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


def teacher_from_main_job(work: Path, concurrency: int) -> tuple[str, str]:
    """(archive path, best candidate id) of the main job run into a fresh archive."""
    from agentmeta import get_model
    from agentmeta.archive import Archive
    from agentmeta.search import Campaign, SearchConfig

    db = work / "main-job.db"
    config = SearchConfig(suite=MAIN_SUITE, kind="graph", strategy="evolve", seeds=["cot", "program_of_thought"],
                          iterations=1, concurrency=concurrency)  # fmt: skip
    model = get_model()
    result = Campaign(config, Archive(db), model=model, meta_model=model).run()
    best = result.best
    if best is None:
        raise SystemExit("the main job found no candidate")
    return str(db), best.id


def row_table(info: dict[str, Any]) -> list[dict[str, Any]]:
    r = info["metrics"]["eval"][0]
    return [
        {"agent": "student (teacher without demonstrations) on the base model", "test": r["before"],
         "tokens": r["student_tokens_before"]},
        {"agent": "student on the adapter", "test": r["after"], "tokens": r["student_tokens_after"],
         "vs_base": [r["diff"], r["low"], r["high"]], "p_better": r["p_better"],
         "vs_teacher": [r["vs_teacher"], r["vs_teacher_low"], r["vs_teacher_high"]]},
        {"agent": f"teacher: {info['data']['teacher']}", "test": r["teacher"], "tokens": r["teacher_tokens"]},
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--train-limit", type=int, default=79)
    ap.add_argument("--eval-limit", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--from-adapter", help="record this finished distill run instead of training")
    ap.add_argument("--note", default="", help="how a --from-adapter run was made (kept with the results)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train.json"))
    args = ap.parse_args()
    start = time.perf_counter()
    if args.from_adapter:
        adapter = Path(args.from_adapter)
    else:
        from agentmeta.train.distill import DistillConfig, train_distill

        work = Path(tempfile.mkdtemp(prefix="bench-distill-"))
        db, teacher = teacher_from_main_job(work, args.concurrency)
        adapter = work / "adapter"
        train_distill(DistillConfig(suite=MAIN_SUITE, teacher=teacher, teacher_archive=db, output=adapter,
                                    steps=args.steps, train_limit=args.train_limit, eval_limit=args.eval_limit,
                                    learning_rate=args.lr))  # fmt: skip
    info = json.loads((adapter / "agentmeta-adapter.json").read_text())
    import torch

    table = row_table(info)
    out = {
        "model": "smollm2 (embedded), LoRA via TRL SFT", "suite": MAIN_SUITE,
        "settings": {k: v for k, v in info["config"].items() if k not in ("output", "archive", "overwrite")},
        "data": {k: v for k, v in info["data"].items() if k != "teacher_source"},
        "s_per_step": info["metrics"].get("s_per_step"), "steps": info["steps"],
        "wall_s": None if args.from_adapter else round(time.perf_counter() - start, 1),
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "cpu": platform.machine()},
        "table": table, "note": args.note,
    }  # fmt: skip
    path = Path(args.out)
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["distill"] = out  # the other sections (bench_train.py's timing) are kept
    path.write_text(json.dumps(results, indent=1) + "\n")
    print("| agent | test | tokens/sample | vs base model, paired [95% CI] | vs teacher, paired [95% CI] |")
    print("| --- | ---: | ---: | --- | --- |")
    for r in table:
        vb = "{:+.3f} [{:+.3f}, {:+.3f}]".format(*r["vs_base"]) if "vs_base" in r else "-"
        vt = "{:+.3f} [{:+.3f}, {:+.3f}]".format(*r["vs_teacher"]) if "vs_teacher" in r else "-"
        print(f"| {r['agent']} | {r['test']:.3f} | {r['tokens']:.0f} | {vb} | {vt} |")


if __name__ == "__main__":
    main()
