"""`agentmeta train metaicl`, `agentmeta train grpo` and `agentmeta train distill`. The main app
calls `register(app)`.

Each command turns its flags (and the `trainer:`/`lora:` sections of `--config`) into a
`MetaICLConfig` / `GRPOConfig` and calls `train_metaicl` / `train_grpo` with it.

Multi-GPU: run the same command under accelerate, e.g.
`accelerate launch --num_processes 4 -m agentmeta train grpo --suite gsm8k --steps 200 --output out/`
(DeepSpeed/FSDP come from `accelerate config`; TRL settings from `--config`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from agentmeta.errors import ConfigError

train_app = typer.Typer(
    help="Train LoRA adapters: MetaICL (in-context learning), GRPO (rewards = suite scorers) or "
    "distillation of a found agent.",
    no_args_is_help=True,
)

_ARCHIVE_HELP = "Archive (path or SQLAlchemy URL) to register the adapter in, as a model candidate."


def _split(value: str, what: str) -> list[str]:
    items = [s.strip() for s in value.split(",") if s.strip()]
    if not items:
        raise ConfigError(f"{what} is empty: give comma-separated suite specs")
    return items


def _progress() -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task("train", total=None, info="")

    def report(step: int, total: int, logs: dict[str, float]) -> None:
        if not bar.live.is_started:  # shown from the first step on: loading and errors stay clean
            bar.start()
        shown = {k: v for k, v in logs.items() if k in ("loss", "reward", "rewards/score/mean", "step_time")}
        bar.update(task, completed=step, total=total, info=" ".join(f"{k}={v:.3g}" for k, v in shown.items()))

    return bar, report


def _run(fn: Any, config: Any) -> Any:
    import warnings

    from agentmeta.cli import _quiet_transformers

    _quiet_transformers()
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' renamed-setting notices
    bar, report = _progress()
    try:
        return fn(config, progress=report)
    finally:
        if bar.live.is_started:
            bar.stop()


def _print_result(result: Any, title: str) -> None:
    from rich.table import Table

    from agentmeta.cli import make_console

    console = make_console()
    if result.table:
        table = Table(title=title)
        for col in ("suite", "n", "before", "after", "diff [95% CI]", "p(better)"):
            table.add_column(col)
        for r in result.table:
            table.add_row(
                r["suite"],
                str(r["n"]),
                f"{r['before']:.3f}",
                f"{r['after']:.3f}",
                f"{r['diff']:+.3f} [{r['low']:+.3f}, {r['high']:+.3f}]",
                f"{r['p_better']:.2f}",
            )
        console.print(table)
    times = result.step_times
    per = sum(times) / len(times) if times else 0.0
    console.print(f"adapter: {result.output} ({result.info.steps} steps, {per:.1f} s/step)", highlight=False)
    if result.candidate_id:
        console.print(f"archive candidate: {result.candidate_id}", highlight=False)


def _archive(archive: str | None, no_register: bool) -> str | None:
    if no_register:
        return None
    return archive or os.environ.get("AGENTMETA_ARCHIVE", "agentmeta-archive.db")


@train_app.command("metaicl")
def metaicl_cmd(
    train_suites: Annotated[
        str, typer.Option("--train-suites", help="Comma-separated suites to meta-train on.")
    ],
    eval_suites: Annotated[str, typer.Option("--eval-suites", help="Comma-separated held-out suites.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Adapter directory to write.")],
    k: Annotated[int, typer.Option("--k", help="Demonstrations per episode.", min=0)] = 4,
    steps: Annotated[int, typer.Option(help="Optimizer steps.", min=1)] = 10,
    model: Annotated[str | None, typer.Option(help="Base model: smollm2 (default) or hf/<dir>.")] = None,
    samples_per_suite: Annotated[int, typer.Option(help="Training samples per suite.", min=2)] = 64,
    eval_limit: Annotated[int, typer.Option(help="Held-out test samples per eval suite.", min=1)] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="Episodes per step.", min=1)] = 2,
    max_length: Annotated[int, typer.Option(help="Most tokens per episode.", min=16)] = 512,
    max_new_tokens: Annotated[int, typer.Option(help="Most new tokens per eval answer.", min=1)] = 32,
    seed: Annotated[int, typer.Option(help="Seed of episodes, training and evaluation.")] = 0,
    config: Annotated[Path | None, typer.Option(help="YAML with `trainer:` (SFTConfig) and `lora:`.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    archive: Annotated[str | None, typer.Option(help=_ARCHIVE_HELP)] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not add it to an archive.")] = False,
) -> None:
    """Meta-train for in-context learning; print k-shot accuracy on held-out suites before and after."""
    from agentmeta.train.common import load_settings
    from agentmeta.train.metaicl import MetaICLConfig, train_metaicl

    run = MetaICLConfig(
        train_suites=_split(train_suites, "--train-suites"),
        eval_suites=_split(eval_suites, "--eval-suites"),
        output=output,
        k=k,
        steps=steps,
        model=model,
        samples_per_suite=samples_per_suite,
        eval_limit=eval_limit,
        learning_rate=lr,
        batch_size=batch_size,
        max_length=max_length,
        max_new_tokens=max_new_tokens,
        seed=seed,
        overwrite=overwrite,
        archive=_archive(archive, no_register),
        **load_settings(config),
    )
    result = _run(train_metaicl, run)
    _print_result(result, f"{k}-shot in-context accuracy, held-out suites (saved in metaicl-eval.json)")


@train_app.command("grpo")
def grpo_cmd(
    suite: Annotated[str, typer.Option("--suite", "-s", help="Suite whose scorer is the reward.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Adapter directory to write.")],
    steps: Annotated[int, typer.Option(help="Optimizer steps.", min=1)] = 10,
    model: Annotated[str | None, typer.Option(help="Base model: smollm2 (default) or hf/<dir>.")] = None,
    target: Annotated[
        str, typer.Option(help="answer (the policy answers) or conductor (it plans).")
    ] = "answer",
    workers: Annotated[
        str | None, typer.Option(help="Comma-separated worker model specs for --target conductor.")
    ] = None,
    train_limit: Annotated[int, typer.Option(help="Training prompts (train split).", min=1)] = 64,
    eval_limit: Annotated[int, typer.Option(help="Test samples before/after (0: skip).", min=0)] = 16,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 1e-5,
    num_generations: Annotated[int, typer.Option(help="Completions per prompt.", min=2)] = 4,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per completion.", min=1)] = 128,
    format_weight: Annotated[
        float, typer.Option(help="Weight of the format reward (0: off).", min=0.0)
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of sampling, training and evaluation.")] = 0,
    config: Annotated[
        Path | None, typer.Option(help="YAML with `trainer:` (GRPOConfig) and `lora:`.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    archive: Annotated[str | None, typer.Option(help=_ARCHIVE_HELP)] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not add it to an archive.")] = False,
) -> None:
    """Reinforcement learning (GRPO) with the suite's scorer as reward; print test scores before and after."""
    from agentmeta.train.common import load_settings
    from agentmeta.train.grpo import GRPOConfig, train_grpo

    run = GRPOConfig(
        suite=suite,
        output=output,
        steps=steps,
        model=model,
        target=target,
        workers=_split(workers, "--workers") if workers else None,
        train_limit=train_limit,
        eval_limit=eval_limit,
        learning_rate=lr,
        num_generations=num_generations,
        max_new_tokens=max_new_tokens,
        format_weight=format_weight,
        seed=seed,
        overwrite=overwrite,
        archive=_archive(archive, no_register),
        **load_settings(config),
    )
    result = _run(train_grpo, run)
    _print_result(result, "test score before and after GRPO")
    rewards = result.info.metrics.get("rewards") or []
    if rewards:
        typer.echo("rewards per step: " + json.dumps([r.get("reward") for r in rewards]))


@train_app.command("distill")
def distill_cmd(
    suite: Annotated[str, typer.Option("--suite", "-s", help="Suite: train split for traces, test split to compare.")],
    teacher: Annotated[
        str, typer.Option(help="The graph agent distilled: a candidate id (with --teacher-archive), a seed or a file.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Adapter directory to write.")],
    teacher_archive: Annotated[str | None, typer.Option(help="Archive the teacher candidate is in.")] = None,
    steps: Annotated[int, typer.Option(help="Optimizer steps.", min=1)] = 30,
    model: Annotated[str | None, typer.Option(help="Base model: smollm2 (default) or hf/<dir>.")] = None,
    train_limit: Annotated[int, typer.Option(help="Train items the teacher runs on.", min=1)] = 64,
    k: Annotated[int, typer.Option(help="Teacher runs per train item (evaluation seeds).", min=1)] = 1,
    eval_limit: Annotated[int, typer.Option(help="Test samples before/after (0: skip).", min=0)] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 2e-4,
    batch_size: Annotated[int, typer.Option(help="Pairs per optimizer step.", min=1)] = 4,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per generated answer.", min=1)] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the traces, training and evaluation.")] = 0,
    config: Annotated[Path | None, typer.Option(help="YAML with `trainer:` (SFTConfig) and `lora:`.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output directory.")] = False,
    archive: Annotated[str | None, typer.Option(help=_ARCHIVE_HELP)] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not add it to an archive.")] = False,
) -> None:
    """Distill a found graph agent into a LoRA adapter: fine-tune on its scorer-verified train
    traces, then compare the agent without its demonstrations on the base model and on the adapter
    (paired, test split), with the teacher beside it."""
    import logging

    from agentmeta.train.common import load_settings
    from agentmeta.train.distill import DistillConfig, train_distill

    phases = logging.getLogger("agentmeta.train.distill")  # the slow phases before training, on stderr
    phases.setLevel(logging.INFO)
    if not phases.handlers:
        phases.addHandler(logging.StreamHandler())
        phases.propagate = False  # said once, not again by a root handler

    run = DistillConfig(
        suite=suite, teacher=teacher, teacher_archive=teacher_archive, output=output, steps=steps, model=model,
        train_limit=train_limit, k=k, eval_limit=eval_limit, learning_rate=lr, batch_size=batch_size,
        max_new_tokens=max_new_tokens, seed=seed, overwrite=overwrite, archive=_archive(archive, no_register),
        **load_settings(config),
    )  # fmt: skip
    result = _run(train_distill, run)
    _print_result(result, "the student (teacher without demonstrations): test score on the base model and on the adapter")
    for row in result.table:
        if "teacher" in row:
            typer.echo(
                f"teacher {row['teacher']:.3f} ({row['teacher_tokens']:.0f} tokens/sample); student on the adapter "
                f"{row['after']:.3f} ({row['student_tokens_after']:.0f} tokens/sample), vs teacher "
                f"{row['vs_teacher']:+.3f} [{row['vs_teacher_low']:+.3f}, {row['vs_teacher_high']:+.3f}]"
            )


def register(app: typer.Typer) -> None:
    """Add the `train` command group to `app`."""
    app.add_typer(train_app, name="train")
