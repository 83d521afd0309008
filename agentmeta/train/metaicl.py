"""MetaICL: meta-train a model to learn in context, then measure k-shot accuracy on unseen suites.

An episode is k demonstrations of one task followed by a query of the same task; the loss is on
the query's answer tokens only. When an episode is longer than `max_length`, whole
demonstrations are dropped, oldest (farthest from the query) first; the query is never cut, and
an episode whose query alone does not fit is skipped. Training is TRL's `SFTTrainer` on
prompt/completion pairs with a PEFT LoRA adapter; before and after training the same k-shot
prompts (same demonstrations, same held-out samples) are scored and compared on the same samples
(Tango's paired interval; `agentmeta.eval.stats.compare_results`). `train_metaicl(MetaICLConfig(...))` runs it; `MetaICL` holds what differs from the
shared loop skeleton (`common.run_loop`).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import model_validator

from agentmeta.errors import ConfigError, require
from agentmeta.eval.types import Sample
from agentmeta.prompts import render
from agentmeta.train.common import (
    INSTALL,
    AdapterInfo,
    Algorithm,
    ProgressFn,
    RunConfig,
    TrainResult,
    run_loop,
)

if TYPE_CHECKING:
    from typing_extensions import Self

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


class MetaICLConfig(RunConfig):
    """Settings of a MetaICL run (`train_metaicl`; the flags of `agentmeta train metaicl`)."""

    loop: ClassVar[str] = "metaicl"

    train_suites: list[str]
    """Suites to meta-train on: episodes from their train split."""
    eval_suites: list[str]
    """Held-out suites (never trained on): k-shot accuracy on their test split, before and after."""
    k: int = 4
    """Demonstrations per episode and per held-out prompt."""
    samples_per_suite: int = 64
    """Training samples loaded per training suite."""
    learning_rate: float = 1e-4
    """Learning rate (constant, no warm-up, unless `trainer` says otherwise)."""
    batch_size: int = 2
    """Episodes per optimizer step."""
    max_length: int = 512
    """Most tokens per episode: longer ones drop demonstrations, oldest first."""
    max_new_tokens: int = 32
    """Most new tokens per held-out answer."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.k < 0:
            raise ConfigError(f"k must be >= 0; got {self.k}")
        overlap = sorted(set(self.train_suites) & set(self.eval_suites))
        if overlap:
            raise ConfigError(f"evaluation suites must be held out; trained on: {', '.join(overlap)}")
        if not self.trainer.get("completion_only_loss", True):
            raise ConfigError(
                "MetaICL computes the loss on answer tokens only: completion_only_loss must be true"
            )
        return self


def _load_tasks(specs: Sequence[str], limit: int, seed: int, split: str) -> dict[str, list[Sample]]:
    from agentmeta.eval.suites import load_suite

    return {spec: load_suite(spec, split=split, limit=limit, seed=seed).samples for spec in specs}


class MetaICL(Algorithm):
    """MetaICL's part of `run_loop`: k-shot episodes for TRL's `SFTTrainer`, k-shot held-out evaluation.

    Episodes come from each training suite's train split (`samples_per_suite` samples).
    Evaluation uses `eval_limit` samples of each held-out suite's test split, with k demonstrations
    drawn once from its train split, so before and after see identical prompts.
    """

    config: MetaICLConfig
    trl_names = ("SFTTrainer", "SFTConfig")

    def load_data(self) -> None:
        from agentmeta.eval.suites import load_suite

        c = self.config
        self.tasks = _load_tasks(c.train_suites, c.samples_per_suite, c.seed, "train")
        check_k(self.tasks, c.k)
        self.demo_pools = _load_tasks(c.eval_suites, max(c.k, 1), c.seed, "train")
        for name, pool in self.demo_pools.items():
            if c.k > len(pool):
                raise ConfigError(f"k={c.k} but held-out suite {name} has only {len(pool)} demonstrations")
        self.held_out = [load_suite(s, split="test", limit=c.eval_limit, seed=c.seed) for s in c.eval_suites]

    def setup(self, base: str, tokenizer: Any) -> None:
        c = self.config
        length = token_length(tokenizer)
        n_episodes = c.steps * c.batch_size * int(c.trainer.get("gradient_accumulation_steps", 1))
        self.episodes = build_episodes(self.tasks, c.k, n_episodes, c.max_length, length, c.seed)
        self.evals = [
            (KShotAgent(self.demo_pools[spec], c.max_length, length, c.max_new_tokens), suite)
            for spec, suite in zip(c.eval_suites, self.held_out, strict=True)
        ]

    def dataset(self) -> Any:
        return sft_dataset(self.episodes)

    def trainer_settings(self) -> dict[str, Any]:
        c = self.config
        return {
            "per_device_train_batch_size": c.batch_size,
            "max_length": c.max_length,
            "completion_only_loss": True,
        }

    def data(self) -> dict[str, Any]:
        c = self.config
        return {
            "train_suites": list(c.train_suites),
            "eval_suites": list(c.eval_suites),
            "k": c.k,
            "episodes": len(self.episodes),
            "samples_per_suite": c.samples_per_suite,
            "eval_limit": c.eval_limit,
            "dropped_demonstrations": sum(e.dropped for e in self.episodes),
        }

    def settings(self) -> dict[str, Any]:
        return {"batch_size": self.config.batch_size, "max_length": self.config.max_length}

    def metrics(self, trainer: Any, timer: Any) -> dict[str, Any]:
        return {"train_loss": timer.logs.get("train_loss", timer.logs.get("loss"))}

    def row_extra(self) -> dict[str, Any]:
        return {"k": self.config.k}

    def report(
        self, where: Path, info: AdapterInfo, table: list[dict[str, Any]], before: list[Any], after: list[Any]
    ) -> None:
        info.metrics["in_context"] = table
        (where / "metaicl-eval.json").write_text(
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

    def candidate_name(self, final: Path) -> str:
        return f"metaicl-k{self.config.k}-{final.name}"


def train_metaicl(
    config: MetaICLConfig, *, progress: ProgressFn | None = None, callbacks: list[Any] | None = None
) -> TrainResult:
    """Meta-train a LoRA adapter on k-shot episodes of `config.train_suites`; compare k-shot accuracy
    on `config.eval_suites` (never trained on) before and after. Writes the adapter to `config.output`.

    `progress(step, max_steps, logs)` is called after each optimizer step; `callbacks` are more
    `transformers.TrainerCallback`s for the trainer. See `MetaICL` for the data and evaluation.
    """
    return run_loop(MetaICL(config), progress=progress, callbacks=callbacks)
