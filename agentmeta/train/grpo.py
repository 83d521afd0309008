"""GRPO: reinforcement learning on a suite's prompts, rewarded by the suite's own scorer.

`target="answer"` (default): the policy answers each sample directly (the `eval-direct` prompt)
and the reward is the suite scorer's value for that completion, plus an optional format reward
(1 when the completion has an `Answer:` line). `target="conductor"`: the policy writes a
workflow plan (the `workflow-plan` prompt); the reward parses it, runs it with the worker
models and scores the final answer (0 for a plan that does not parse). Training is TRL's
`GRPOTrainer` with a PEFT LoRA adapter; with a CUDA GPU, `use_vllm`/`vllm_mode` from the
settings file reach TRL's `GRPOConfig` unchanged. `train_grpo(GRPOConfig(...))` runs it (this
module's `GRPOConfig`: agentmeta's run settings); `GRPO` holds what differs from the shared loop
skeleton (`common.run_loop`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import model_validator

from agentmeta.errors import AgentMetaError, ConfigError, InfrastructureError, require
from agentmeta.eval.types import Sample, Suite
from agentmeta.prompts import render
from agentmeta.train.common import INSTALL, Algorithm, ProgressFn, RunConfig, TrainResult, run_loop

if TYPE_CHECKING:
    from typing_extensions import Self

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


class GRPOConfig(RunConfig):
    """Settings of a GRPO run (`train_grpo`; the flags of `agentmeta train grpo`).

    Not TRL's `trl.GRPOConfig`: TRL settings go in `trainer`.
    """

    loop: ClassVar[str] = "grpo"

    suite: str
    """Suite whose scorer is the reward: prompts from its train split, before/after on its test split."""
    target: str = "answer"
    """`answer` (the policy answers) or `conductor` (the policy writes workflow plans)."""
    workers: list[str] | None = None
    """Worker model specs that run the plans for `target="conductor"` (default: the base model)."""
    train_limit: int = 64
    """Training prompts (train split)."""
    eval_limit: int = 16
    """Test samples scored greedily before and after training (0: skip)."""
    learning_rate: float = 1e-5
    """Learning rate (constant, no warm-up, unless `trainer` says otherwise)."""
    num_generations: int = 4
    """Completions per prompt (one group per step unless `trainer` says otherwise)."""
    max_new_tokens: int = 128
    """Most tokens per completion (training and evaluation)."""
    format_weight: float = 0.0
    """Weight of the format reward (an `Answer:` line, or a parsable plan); 0: off."""

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.target not in TARGETS:
            raise ConfigError(f"unknown target {self.target!r}; use one of: {', '.join(TARGETS)}")
        if self.num_generations < 2:
            raise ConfigError(
                "GRPO compares completions of one prompt: num_generations must be >= 2; "
                f"got {self.num_generations}"
            )
        return self


class GRPO(Algorithm):
    """GRPO's part of `run_loop`: suite prompts and scorer rewards for TRL's `GRPOTrainer`.

    `rewards_out`, when given, receives the reward function objects (their `calls`) once built.
    """

    config: GRPOConfig
    trl_names = ("GRPOTrainer", "GRPOConfig")

    def __init__(self, config: GRPOConfig, rewards_out: list[Any] | None = None) -> None:
        super().__init__(config)
        self.rewards_out = rewards_out

    def load_data(self) -> None:
        from agentmeta.eval.suites import load_suite

        c = self.config
        self.train = load_suite(c.suite, split="train", limit=c.train_limit, seed=c.seed)
        if not self.train.samples:
            raise ConfigError(f"suite {c.suite} has no train samples to train on")
        self.held_out = (
            load_suite(c.suite, split="test", limit=c.eval_limit, seed=c.seed) if c.eval_limit > 0 else None
        )

    def setup(self, base: str, tokenizer: Any) -> None:
        from agentmeta.conductor.core import Conductor
        from agentmeta.models import get_model

        c = self.config
        self.workers = list(c.workers or [f"hf/{base}"])
        conductor = None
        if c.target == "conductor":
            worker = self.workers[0]
            conductor = Conductor(
                get_model(worker), expert_model=worker, expert_max_tokens=c.max_new_tokens, seed=c.seed
            )
        self.rewards, self.weights = build_rewards(
            self.train, c.target, format_weight=c.format_weight, workers=self.workers, conductor=conductor
        )
        if self.rewards_out is not None:
            self.rewards_out.extend(self.rewards)
        agent: Any = (
            _WorkflowAgent(self.workers, c.max_new_tokens, c.seed)
            if c.target == "conductor"
            else _DirectAgent(c.max_new_tokens)
        )
        self.evals = [(agent, self.held_out)] if self.held_out else []

    def dataset(self) -> Any:
        return grpo_dataset(self.train, self.config.target, self.workers)

    def trainer_settings(self) -> dict[str, Any]:
        c = self.config
        return {
            "per_device_train_batch_size": c.num_generations,
            "num_generations": c.num_generations,
            "max_completion_length": c.max_new_tokens,
            "reward_weights": self.weights,
        }

    def trainer_extra(self) -> dict[str, Any]:
        return {"reward_funcs": self.rewards}

    def data(self) -> dict[str, Any]:
        c = self.config
        return {
            "suite": c.suite,
            "target": c.target,
            "workers": self.workers,
            "train_samples": len(self.train.samples),
            "eval_limit": c.eval_limit,
            "format_weight": c.format_weight,
        }

    def settings(self) -> dict[str, Any]:
        return {"num_generations": self.config.num_generations, "max_new_tokens": self.config.max_new_tokens}

    def metrics(self, trainer: Any, timer: Any) -> dict[str, Any]:
        logged = [h for h in trainer.state.log_history if "step" in h and "loss" in h]
        return {"rewards": [{k: v for k, v in h.items() if k.startswith(("reward", "step"))} for h in logged]}

    def candidate_name(self, final: Path) -> str:
        return f"grpo-{self.config.target}-{final.name}"


def train_grpo(
    config: GRPOConfig,
    *,
    progress: ProgressFn | None = None,
    callbacks: list[Any] | None = None,
    rewards_out: list[Any] | None = None,
) -> TrainResult:
    """Train a LoRA adapter with GRPO on `config.suite` (train split) and write it to `config.output`.

    `config.eval_limit` test samples are scored greedily before and after (0 skips that).
    `progress(step, max_steps, logs)` is called after each optimizer step; `callbacks` are more
    `transformers.TrainerCallback`s; `rewards_out`, when given, receives the reward function
    objects (their `calls`).
    """
    return run_loop(GRPO(config, rewards_out), progress=progress, callbacks=callbacks)
