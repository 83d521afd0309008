"""GRPO: reinforcement learning on a suite's prompts, rewarded by the suite's own scorer.

`target="answer"` (default): the policy answers each sample directly (the `eval-direct` prompt)
and the reward is the suite scorer's value for that completion, plus an optional format reward
(1 when the completion has an `Answer:` line). `target="conductor"`: the policy writes a
workflow plan (the `workflow-plan` prompt); the reward parses it, runs it with the worker
models and scores the final answer (0 for a plan that does not parse). Training is TRL's
`GRPOTrainer` with a PEFT LoRA adapter; with a CUDA GPU, `use_vllm`/`vllm_mode` from the
settings file reach `GRPOConfig` unchanged.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentmeta.errors import AgentMetaError, ConfigError, InfrastructureError, require
from agentmeta.eval.types import Sample, Suite
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

TARGETS = ("answer", "conductor")
_ANSWER_LINE = re.compile(r"^\s*\**answer\**\s*:", re.IGNORECASE | re.MULTILINE)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a list of chat messages (last one's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        last = completion[-1]
        return str(last.get("content", "")) if isinstance(last, dict) else str(last)
    return ""


class SuiteReward:
    """A TRL reward function from a suite's scorer: `(prompts, completions, sample_id) -> scores`.

    Every call is recorded in `calls` as `(sample_id, text, value)`, so a run can show which
    scorer values the trainer received. The completion's own failures (a plan that does not parse,
    a failed workflow) score 0. An infrastructure failure (a worker model or the sandbox down) is
    retried `infra_retries` times, then the completion gets `None`: TRL leaves a completion that
    no reward function scores out of the group baseline and gives it zero advantage, so the policy
    is never rewarded or punished for the infrastructure. `infra_errors` counts them; past
    `max_infra_share` of one batch the training stops with an `InfrastructureError`.
    """

    def __init__(
        self,
        suite: Suite,
        name: str = "score",
        *,
        infra_retries: int = 2,
        retry_wait_s: float = 1.0,
        max_infra_share: float = 0.5,
    ) -> None:
        self.suite = suite
        self.by_id: dict[str, Sample] = {s.id: s for s in suite.samples}
        self.__name__ = name
        self.calls: list[tuple[str, str, float | None]] = []
        self.infra_errors = 0
        self.infra_retries = infra_retries
        self.retry_wait_s = retry_wait_s
        self.max_infra_share = max_infra_share
        self.unscored: set[tuple[str, str]] = set()
        """(sample id, completion) of the last batch that got no reward (infrastructure errors)."""
        self._lock = threading.Lock()

    def value(self, text: str, sample: Sample) -> float:
        return float(self.suite.score(text, sample).value)

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], sample_id: Sequence[str], **columns: Any
    ) -> list[float]:
        out: list[float | None] = []
        unscored: set[tuple[str, str]] = set()
        lost = 0
        for sid, completion in zip(sample_id, completions, strict=True):
            sample = self.by_id.get(str(sid))
            if sample is None:
                raise ConfigError(f"reward got unknown sample id {sid!r} (not in suite {self.suite.name})")
            text = completion_text(completion)
            v = self._reward(text, sample)
            if v is None:
                unscored.add((str(sid), text))
                lost += 1
            out.append(v)
            with self._lock:
                self.calls.append((str(sid), text, v))
        with self._lock:
            self.unscored = unscored
            self.infra_errors += lost
        if out and lost > self.max_infra_share * len(out):
            raise InfrastructureError(
                f"GRPO stopped: {lost} of {len(out)} completions of one batch could not be scored "
                "because of infrastructure failures (model server or sandbox); see the warnings above"
            )
        return out  # type: ignore[return-value] - TRL takes None for "not scored"

    def _reward(self, text: str, sample: Sample) -> float | None:
        for attempt in range(self.infra_retries + 1):
            try:
                return self.value(text, sample)
            except InfrastructureError as e:
                log.warning(
                    "reward for %s: infrastructure error (%s), attempt %d of %d",
                    sample.id, e, attempt + 1, self.infra_retries + 1,
                )  # fmt: skip
                if attempt < self.infra_retries:
                    time.sleep(self.retry_wait_s * 2**attempt)
            except AgentMetaError as e:  # the completion's own failure (plan does not parse): 0
                log.info("reward 0 for %s: %s", sample.id, e)
                return 0.0
        return None


class ConductorReward(SuiteReward):
    """Reward of a conductor's completion: parse it as a workflow, run it with the workers, score it."""

    def __init__(self, suite: Suite, workers: Sequence[str], conductor: Any, name: str = "workflow") -> None:
        super().__init__(suite, name)
        self.workers = list(workers)
        self.conductor = conductor

    def value(self, text: str, sample: Sample) -> float:
        from agentmeta.conductor.workflow import parse_workflow, run_workflow

        wf = parse_workflow(_json_part(text), len(self.workers))
        result = run_workflow(self.conductor, sample.input, wf, self.workers)
        return float(self.suite.score(f"Answer: {result.answer}", sample).value)


def _json_part(text: str) -> str:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


class _Unless:
    """A secondary reward that gives no reward where the main reward had an infrastructure error
    (TRL calls reward functions in order, so the main one has just scored the same batch)."""

    def __init__(self, fn: Any, main: SuiteReward) -> None:
        self.fn, self.main = fn, main
        self.__name__ = fn.__name__

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], sample_id: Sequence[str], **columns: Any
    ) -> list[float | None]:
        values = self.fn(prompts, completions, **columns)
        return [
            None if (str(sid), completion_text(c)) in self.main.unscored else v
            for sid, c, v in zip(sample_id, completions, values, strict=True)
        ]


def format_reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """1.0 when the completion has an `Answer:` line (the format every scorer reads), else 0.0."""
    return [1.0 if _ANSWER_LINE.search(completion_text(c)) else 0.0 for c in completions]


def workflow_format_reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """1.0 when the completion parses as a JSON workflow object, else 0.0."""
    out = []
    for c in completions:
        try:
            data = json.loads(_json_part(completion_text(c)))
            out.append(1.0 if isinstance(data, dict) and isinstance(data.get("steps"), list) else 0.0)
        except ValueError:
            out.append(0.0)
    return out


def worker_listing(workers: Sequence[str]) -> str:
    return "\n".join(f"{i}: {getattr(w, 'spec', w)}" for i, w in enumerate(workers))


def grpo_prompt(sample: Sample, target: str, workers: Sequence[str] = ()) -> str:
    if target == "conductor":
        return render("workflow-plan", workers=worker_listing(workers), question=sample.input.strip())
    return render("eval-direct", input=sample.input)


def grpo_dataset(suite: Suite, target: str = "answer", workers: Sequence[str] = ()) -> Any:
    datasets = require("datasets", INSTALL, "datasets")
    return datasets.Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": grpo_prompt(s, target, workers)}], "sample_id": s.id}
            for s in suite.samples
        ]
    )


def build_rewards(
    suite: Suite,
    target: str = "answer",
    *,
    format_weight: float = 0.0,
    workers: Sequence[str] = (),
    conductor: Any = None,
) -> tuple[list[Any], list[float]]:
    """The reward functions and their weights for a suite (scorer first, format reward if weighted)."""
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; use one of: {', '.join(TARGETS)}")
    if target == "conductor":
        main: SuiteReward = ConductorReward(suite, workers, conductor)
        fmt: Any = workflow_format_reward
    else:
        main, fmt = SuiteReward(suite), format_reward
    if format_weight > 0:
        return [main, _Unless(fmt, main)], [1.0, format_weight]
    return [main], [1.0]


def build_grpo_trainer(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    rewards: list[Any],
    weights: list[float],
    output_dir: Path,
    *,
    steps: int,
    learning_rate: float,
    num_generations: int,
    max_new_tokens: int,
    seed: int,
    settings: dict[str, dict[str, Any]] | None = None,
    callbacks: list[Any] | None = None,
) -> Any:
    """TRL `GRPOTrainer` with a LoRA adapter; one prompt group per step unless settings say otherwise."""
    trl = require("trl", INSTALL, "trl")
    settings = settings or {"trainer": {}, "lora": {}}
    args = trainer_args(
        trl.GRPOConfig,
        output_dir,
        {
            "max_steps": steps,
            "learning_rate": learning_rate,
            "per_device_train_batch_size": num_generations,
            "num_generations": num_generations,
            "max_completion_length": max_new_tokens,
            "reward_weights": weights,
            "seed": seed,
            "lr_scheduler_type": "constant",
            "warmup_steps": 0,
        },
        settings["trainer"],
    )
    return quiet(
        trl.GRPOTrainer(
            model=model,
            reward_funcs=rewards,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(settings["lora"]),
            callbacks=callbacks,
        )
    )


class _DirectAgent:
    """Answers with the same prompt GRPO trains on (greedy), for the before/after table."""

    name = "direct"

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def run(self, task_input: str, model: Any) -> str:
        prompt = render("eval-direct", input=task_input)
        return model.generate(prompt, temperature=0.0, max_tokens=self.max_tokens).text


class _WorkflowAgent:
    """Plans a workflow with the (trained) conductor model and runs it with the workers."""

    name = "workflow"

    def __init__(self, workers: Sequence[str], max_tokens: int, seed: int) -> None:
        self.workers, self.max_tokens, self.seed = list(workers), max_tokens, seed

    def run(self, task_input: str, model: Any) -> str:
        from agentmeta.conductor.core import Conductor
        from agentmeta.conductor.workflow import plan, run_workflow

        c = Conductor(model, expert_model=self.workers[0], expert_max_tokens=self.max_tokens, seed=self.seed)
        return (
            "Answer: " + run_workflow(c, task_input, plan(c, task_input, self.workers), self.workers).answer
        )


def train_grpo(
    suite: str,
    output: str | Path,
    *,
    steps: int = 10,
    model: str | None = None,
    target: str = "answer",
    workers: Sequence[str] | None = None,
    train_limit: int = 64,
    eval_limit: int = 16,
    learning_rate: float = 1e-5,
    num_generations: int = 4,
    max_new_tokens: int = 128,
    format_weight: float = 0.0,
    seed: int = 0,
    config: str | Path | None = None,
    overwrite: bool = False,
    archive: Any = None,
    progress: ProgressFn | None = None,
    callbacks: list[Any] | None = None,
    rewards_out: list[Any] | None = None,
) -> TrainResult:
    """Train a LoRA adapter with GRPO on `suite` (train split) and write it to `output`.

    `eval_limit` test samples are scored greedily before and after (0 skips that). For
    `target="conductor"`, `workers` are the model specs that run the plans (default: the base
    model). `rewards_out`, when given, receives the reward function objects (their `calls`).
    """
    from agentmeta.conductor.core import Conductor
    from agentmeta.eval.runner import evaluate
    from agentmeta.eval.suites import load_suite
    from agentmeta.models import get_model

    check_run(steps, output, overwrite)
    if target not in TARGETS:
        raise ConfigError(f"unknown target {target!r}; use one of: {', '.join(TARGETS)}")
    if num_generations < 2:
        raise ConfigError(
            f"GRPO compares completions of one prompt: num_generations must be >= 2; got {num_generations}"
        )
    settings = load_settings(config)
    train = load_suite(suite, split="train", limit=train_limit, seed=seed)
    if not train.samples:
        raise ConfigError(f"suite {suite} has no train samples to train on")
    held_out = load_suite(suite, split="test", limit=eval_limit, seed=seed) if eval_limit > 0 else None
    base = resolve_base(model)
    set_seed(seed)
    hf_model, tok = load_base(base)
    specs = list(workers or [f"hf/{base}"])
    conductor = None
    if target == "conductor":
        conductor = Conductor(
            get_model(specs[0]), expert_model=specs[0], expert_max_tokens=max_new_tokens, seed=seed
        )
    rewards, weights = build_rewards(
        train, target, format_weight=format_weight, workers=specs, conductor=conductor
    )
    if rewards_out is not None:
        rewards_out.extend(rewards)
    agent: Any = (
        _WorkflowAgent(specs, max_new_tokens, seed) if target == "conductor" else _DirectAgent(max_new_tokens)
    )

    def run_eval(m: Any) -> Any:
        return evaluate(agent, held_out, model=m, seed=seed, concurrency=8) if held_out else None

    with staged_output(output, overwrite) as tmp:
        before = run_eval(get_model(f"hf/{base}", cache=False, shared=False))
        timer = step_timer(progress)
        trainer = build_grpo_trainer(
            hf_model,
            tok,
            grpo_dataset(train, target, specs),
            rewards,
            weights,
            tmp / "trainer",
            steps=steps,
            learning_rate=learning_rate,
            num_generations=num_generations,
            max_new_tokens=max_new_tokens,
            seed=seed,
            settings=settings,
            callbacks=[timer, *(callbacks or [])],
        )
        trainer.train()
        logged = [h for h in trainer.state.log_history if "step" in h and "loss" in h]
        info = AdapterInfo(
            loop="grpo",
            base_model=base,
            data={
                "suite": suite,
                "target": target,
                "workers": specs,
                "train_samples": len(train.samples),
                "eval_limit": eval_limit,
                "format_weight": format_weight,
            },
            steps=int(trainer.state.global_step),
            settings={
                "learning_rate": learning_rate,
                "num_generations": num_generations,
                "max_new_tokens": max_new_tokens,
                "seed": seed,
                **settings,
            },
            metrics={
                "rewards": [{k: v for k, v in h.items() if k.startswith(("reward", "step"))} for h in logged],
                "s_per_step": sum(timer.times) / max(len(timer.times), 1),
            },
        )
        save_adapter(trainer, tok, tmp, info)
        table: list[dict[str, Any]] = []
        after = None
        if before is not None:
            after = run_eval(get_model(f"hf/{base}", adapter=str(tmp), cache=False, shared=False))
            table.append(before_after(before, after, seed))
            info.metrics["eval"] = table
            save_adapter(trainer, tok, tmp, info)
    final = Path(output).expanduser().resolve()
    cid = None
    if archive is not None:
        cid = register_adapter(archive, final, info, f"grpo-{target}-{final.name}", [after] if after else [])
    return TrainResult(output=str(final), info=info, step_times=timer.times, candidate_id=cid, table=table)
