"""MetaICL: meta-train a model to learn in context, then measure k-shot accuracy on unseen suites.

An episode is k demonstrations of one task followed by a query of the same task; the loss is on
the query's answer tokens only. When an episode is longer than `max_length`, whole
demonstrations are dropped, oldest (farthest from the query) first; the query is never cut, and
an episode whose query alone does not fit is skipped. Training is TRL's `SFTTrainer` on
prompt/completion pairs with a PEFT LoRA adapter; before and after training the same k-shot
prompts (same demonstrations, same held-out samples) are scored and compared with a paired
bootstrap.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmeta.errors import ConfigError, require
from agentmeta.eval.types import Sample
from agentmeta.prompts import render
from agentmeta.train.common import (
    INSTALL,
    AdapterInfo,
    ProgressFn,
    TrainResult,
    before_after,
    check_run,
    load_base,
    load_settings,
    lora_config,
    quiet,
    register_adapter,
    resolve_base,
    save_adapter,
    set_seed,
    staged_output,
    step_timer,
    trainer_args,
)

log = logging.getLogger(__name__)

LengthFn = Callable[[str, str], int]
"""`length(prompt, completion)`: tokens of the whole training sequence."""


@dataclass
class Episode:
    """k demonstrations of one task, then a query; `completion` is what the loss is computed on."""

    task: str
    demos: list[Sample]
    query: Sample
    prompt: str
    completion: str
    dropped: int = 0
    """Demonstrations dropped to fit the length limit."""
    length: int = 0


def format_prompt(demos: Sequence[Sample], query_input: str) -> str:
    """The k-shot prompt: demonstrations (input and answer) then the query's input."""
    demonstrations = "".join(render("metaicl-demo", input=d.input, target=d.target) + "\n" for d in demos)
    return render("metaicl-query", demonstrations=demonstrations, input=query_input)


def format_completion(target: str) -> str:
    return f"Answer: {target}"


def fit_episode(
    task: str, demos: Sequence[Sample], query: Sample, max_length: int, length: LengthFn
) -> Episode | None:
    """The episode with as many demonstrations as fit in `max_length` (oldest dropped first).

    None when even the query alone is too long: a query is never truncated.
    """
    kept = list(demos)
    completion = format_completion(query.target)
    while True:
        prompt = format_prompt(kept, query.input)
        n = length(prompt, completion)
        if n <= max_length:
            return Episode(task, kept, query, prompt, completion, len(demos) - len(kept), n)
        if not kept:
            return None
        kept.pop(0)


def check_k(tasks: dict[str, list[Sample]], k: int, what: str = "training suite") -> None:
    if k < 0:
        raise ConfigError(f"k must be >= 0; got {k}")
    for name, samples in tasks.items():
        if k > len(samples) - 1:
            raise ConfigError(
                f"k={k} demonstrations but {what} {name} has only {max(len(samples) - 1, 0)} besides the "
                f"query: lower --k or load more samples"
            )


def build_episodes(
    tasks: dict[str, list[Sample]],
    k: int,
    n_episodes: int,
    max_length: int,
    length: LengthFn,
    seed: int = 0,
) -> list[Episode]:
    """`n_episodes` episodes, tasks taken in turn; demonstrations and query drawn without overlap."""
    if not tasks:
        raise ConfigError("MetaICL needs at least one training suite")
    check_k(tasks, k)
    rng = random.Random(seed)
    names = sorted(tasks)
    episodes: list[Episode] = []
    skipped = 0
    for i in range(n_episodes):
        name = names[i % len(names)]
        pool = tasks[name]
        q = rng.randrange(len(pool))
        others = pool[:q] + pool[q + 1 :]
        ep = fit_episode(name, rng.sample(others, k), pool[q], max_length, length)
        if ep is None:
            skipped += 1
            continue
        episodes.append(ep)
    if not episodes:
        raise ConfigError(f"no episode fits max_length={max_length}: even single queries are longer")
    if skipped:
        log.warning("%d episode(s) skipped: their query alone is longer than %d tokens", skipped, max_length)
    return episodes


def token_length(tokenizer: Any) -> LengthFn:
    """Length of the chat-formatted (user prompt, assistant completion) pair, in tokens."""

    def length(prompt: str, completion: str) -> int:
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        text = tokenizer.apply_chat_template(msgs, tokenize=False)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return length


@dataclass
class KShotAgent:
    """Answers a query after the same fixed demonstrations (the in-context evaluation agent)."""

    demos: list[Sample]
    max_length: int | None = None
    length: LengthFn | None = None
    max_tokens: int = 32
    name: str = "k-shot"
    dropped: list[int] = field(default_factory=list)

    def prompt(self, task_input: str) -> str:
        if self.max_length is None or self.length is None:
            return format_prompt(self.demos, task_input)
        ep = fit_episode(
            "eval", self.demos, Sample(id="query", input=task_input), self.max_length, self.length
        )
        return ep.prompt if ep is not None else format_prompt([], task_input)

    def run(self, task_input: str, model: Any) -> str:
        return model.generate(self.prompt(task_input), temperature=0.0, max_tokens=self.max_tokens).text


def sft_dataset(episodes: Sequence[Episode]) -> Any:
    datasets = require("datasets", INSTALL, "datasets")
    return datasets.Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": e.prompt}],
                "completion": [{"role": "assistant", "content": e.completion}],
            }
            for e in episodes
        ]
    )


def build_sft_trainer(
    model: Any,
    tokenizer: Any,
    episodes: Sequence[Episode],
    output_dir: Path,
    *,
    steps: int,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    seed: int,
    settings: dict[str, dict[str, Any]] | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """TRL `SFTTrainer` on the episodes, loss on completions only, with a LoRA adapter."""
    trl = require("trl", INSTALL, "trl")
    settings = settings or {"trainer": {}, "lora": {}}
    args = trainer_args(
        trl.SFTConfig,
        output_dir,
        {
            "max_steps": steps,
            "learning_rate": learning_rate,
            "per_device_train_batch_size": batch_size,
            "max_length": max_length,
            "completion_only_loss": True,
            "seed": seed,
            "lr_scheduler_type": "constant",
            "warmup_steps": 0,
        },
        settings["trainer"],
    )
    if not args.completion_only_loss:
        raise ConfigError(
            "MetaICL computes the loss on answer tokens only: completion_only_loss must be true"
        )
    return trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(episodes),
        processing_class=tokenizer,
        peft_config=lora_config(settings["lora"]),
        callbacks=callbacks,
    )


def _load_tasks(specs: Sequence[str], limit: int, seed: int, split: str) -> dict[str, list[Sample]]:
    from agentmeta.eval.suites import load_suite

    return {spec: load_suite(spec, split=split, limit=limit, seed=seed).samples for spec in specs}


def train_metaicl(
    train_suites: Sequence[str],
    eval_suites: Sequence[str],
    output: str | Path,
    *,
    k: int = 4,
    steps: int = 10,
    model: str | None = None,
    samples_per_suite: int = 64,
    eval_limit: int = 16,
    learning_rate: float = 1e-4,
    batch_size: int = 2,
    max_length: int = 512,
    max_new_tokens: int = 32,
    seed: int = 0,
    config: str | Path | None = None,
    overwrite: bool = False,
    archive: Any = None,
    progress: ProgressFn | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Meta-train a LoRA adapter on k-shot episodes of `train_suites`; compare k-shot accuracy on
    `eval_suites` (never trained on) before and after. Writes the adapter to `output`.

    Episodes come from each training suite's train split (`samples_per_suite` samples).
    Evaluation uses `eval_limit` samples of each held-out suite's test split, with k demonstrations
    drawn once from its train split, so before and after see identical prompts.
    """
    from agentmeta.eval.runner import evaluate
    from agentmeta.models import get_model

    check_run(steps, output, overwrite)
    overlap = sorted(set(train_suites) & set(eval_suites))
    if overlap:
        raise ConfigError(f"evaluation suites must be held out; trained on: {', '.join(overlap)}")
    settings = load_settings(config)
    tasks = _load_tasks(train_suites, samples_per_suite, seed, "train")
    check_k(tasks, k)
    demo_pools = _load_tasks(eval_suites, max(k, 1), seed, "train")
    for name, pool in demo_pools.items():
        if k > len(pool):
            raise ConfigError(f"k={k} but held-out suite {name} has only {len(pool)} demonstrations")
    from agentmeta.eval.suites import load_suite

    held_out = [load_suite(s, split="test", limit=eval_limit, seed=seed) for s in eval_suites]
    base = resolve_base(model)
    set_seed(seed)
    hf_model, tok = load_base(base)
    length = token_length(tok)
    n_episodes = steps * batch_size * int(settings["trainer"].get("gradient_accumulation_steps", 1))
    episodes = build_episodes(tasks, k, n_episodes, max_length, length, seed)

    def run_eval(m: Any) -> list[Any]:
        return [
            evaluate(
                KShotAgent(demo_pools[spec], max_length, length, max_new_tokens),
                s,
                model=m,
                seed=seed,
                concurrency=8,
            )
            for spec, s in zip(eval_suites, held_out, strict=True)
        ]

    with staged_output(output, overwrite) as tmp:
        before = run_eval(get_model(f"hf/{base}", cache=False, shared=False)) if held_out else []
        timer = step_timer(progress)
        trainer = build_sft_trainer(
            hf_model,
            tok,
            episodes,
            tmp / "trainer",
            steps=steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            seed=seed,
            settings=settings,
            callbacks=[timer, *(callbacks or [])],
        )
        quiet(trainer).train()
        info = AdapterInfo(
            loop="metaicl",
            base_model=base,
            data={
                "train_suites": list(train_suites),
                "eval_suites": list(eval_suites),
                "k": k,
                "episodes": len(episodes),
                "samples_per_suite": samples_per_suite,
                "eval_limit": eval_limit,
                "dropped_demonstrations": sum(e.dropped for e in episodes),
            },
            steps=int(trainer.state.global_step),
            settings={
                "learning_rate": learning_rate,
                "batch_size": batch_size,
                "max_length": max_length,
                "seed": seed,
                **settings,
            },
            metrics={
                "train_loss": timer.logs.get("train_loss", timer.logs.get("loss")),
                "s_per_step": sum(timer.times) / max(len(timer.times), 1),
            },
        )
        save_adapter(trainer, tok, tmp, info)
        after = (
            run_eval(get_model(f"hf/{base}", adapter=str(tmp), cache=False, shared=False)) if held_out else []
        )
        table = [before_after(b, a, seed, k=k) for b, a in zip(before, after, strict=True)]
        info.metrics["in_context"] = table
        save_adapter(trainer, tok, tmp, info)
        import json

        (tmp / "metaicl-eval.json").write_text(
            json.dumps(
                {
                    "table": table,
                    "before": [r.model_dump(mode="json") for r in before],
                    "after": [r.model_dump(mode="json") for r in after],
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    final = Path(output).expanduser().resolve()
    cid = None
    if archive is not None:
        cid = register_adapter(archive, final, info, f"metaicl-k{k}-{final.name}", after)
    return TrainResult(output=str(final), info=info, step_times=timer.times, candidate_id=cid, table=table)
