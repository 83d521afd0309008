"""Distillation: move what a found agent knows into the weights (DSPy's BootstrapFinetune, STaR).

The *teacher* is a graph agent (an archive candidate, e.g. a campaign's winner, a graph seed or a
graph file). It runs on `train_limit` samples of the suite's train split (`k` runs per item, by
evaluation seed); on each item the scorer says it solved, every call node whose prompt reads the
task alone (its slots) gives one training pair: the call *as the student makes it* (the system
message and the prompt, without the teacher's demonstrations) and the teacher's output there.
Identical pairs are kept once. TRL's `SFTTrainer` fine-tunes a LoRA adapter on them (loss on the
output only).

The *student* is the teacher with every demonstration removed: the same prompts, a fraction of the
tokens. The before/after table scores it on `eval_limit` test samples on the base model and on the
adapter, paired; the report adds the teacher on the base model on the same samples (score and
tokens per sample), so the run shows both whether the weights learned and how far the student is
from the agent it was distilled from. (Rounds of expert iteration, the student's own solved traces
on the adapter added to the next round's pairs, are not implemented.)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from agentmeta.errors import ConfigError, require
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
    from agentmeta.agents.graph import GraphSpec

log = logging.getLogger(__name__)


class DistillConfig(RunConfig):
    """Settings of a distillation run (`train_distill`; the flags of `agentmeta train distill`)."""

    loop: ClassVar[str] = "distill"

    suite: str
    """Suite: traces from its train split, the before/after comparison on its test split."""
    teacher: str
    """The agent distilled: an archive candidate id (with `teacher_archive`), a graph seed
    (`graph/cot`) or a graph agent file."""
    teacher_archive: str | None = None
    """Archive the teacher candidate is read from."""
    train_limit: int = 64
    """Train items the teacher runs on."""
    k: int = 1
    """Runs per train item (evaluation seeds seed..seed+k-1: different samples where a node samples)."""
    learning_rate: float = 2e-4
    batch_size: int = 4
    """Pairs per optimizer step."""
    max_length: int = 768
    """Most tokens per training pair (longer ones are left out)."""
    max_new_tokens: int = 256
    """Most new tokens per call of the student (its nodes' own budgets, capped at this)."""
    steps: int = 30
    eval_limit: int = 64

    def model_post_init(self, __context: Any) -> None:
        if self.k < 1 or self.train_limit < 1:
            raise ConfigError(f"k and train_limit must be >= 1; got k={self.k}, train_limit={self.train_limit}")


def load_teacher(reference: str, archive: str | None) -> tuple[str, GraphSpec]:
    """(display name, graph spec) of the teacher; a one-line `ConfigError` for anything else."""
    from agentmeta.agents.graph import parse_spec
    from agentmeta.agents.loader import find_seed, spec_from_file

    if archive is not None:
        from agentmeta.archive import Archive

        cand = Archive(archive, create=False).get(reference, with_evaluations=False)
        kind, name, source = cand.kind, f"{cand.name} ({cand.id})", cand.source
    elif Path(reference).is_file():
        spec = spec_from_file(reference)
        kind, name, source = spec.kind, spec.name, spec.source
    else:
        spec = find_seed(reference)
        if spec is None:
            raise ConfigError(f"teacher {reference!r} is not a seed, a file or (with --teacher-archive) a candidate")
        kind, name, source = spec.kind, spec.name, spec.source
    if kind != "graph":
        raise ConfigError(f"the teacher must be a graph agent (its calls are traced); {name} is of kind {kind}")
    return name, parse_spec(source)


def student_of(teacher: GraphSpec, max_tokens: int | None = None) -> GraphSpec:
    """The teacher with every node's demonstrations removed (and its budgets capped at `max_tokens`)."""
    cap = (lambda n: min(n.max_tokens, max_tokens)) if max_tokens else (lambda n: n.max_tokens)
    nodes = [n.model_copy(update={"demos": [], "max_tokens": cap(n)}) for n in teacher.nodes]
    return teacher.model_copy(update={"nodes": nodes, "name": f"{teacher.name} (no demos)"})


def pairs_from(graph: GraphSpec, outputs: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """Training pairs from one solved run: each slot node (an llm node reading the task alone) as
    the student calls it, and the output it gave."""
    from agentmeta.agents.kinds import graph_slots

    out = []
    for slot in graph_slots(graph):
        node = graph.nodes[slot.index]
        text = outputs.get(node.id)
        if node.type != "llm" or not slot.task_only or not isinstance(text, str) or not text.strip():
            continue
        prompt = [
            {"role": "system", "content": f"You are a {node.role}."},
            {"role": "user", "content": node.prompt.format_map({"input": task})},  # as the graph renders it
        ]
        out.append({"prompt": prompt, "completion": [{"role": "assistant", "content": text.strip()}]})
    return out


class Distill(Algorithm):
    """Distillation's part of `run_loop` (see the module)."""

    config: DistillConfig
    trl_names = ("SFTTrainer", "SFTConfig")

    def load_data(self) -> None:
        from agentmeta.eval.suites import load_suite

        c = self.config
        self.teacher_name, self.teacher = load_teacher(c.teacher, c.teacher_archive)
        self.student = student_of(self.teacher, c.max_new_tokens)
        self.train = load_suite(c.suite, split="train", limit=c.train_limit, seed=c.seed)
        self.test = load_suite(c.suite, split="test", limit=c.eval_limit, seed=c.seed) if c.eval_limit else None
        if not self.train.samples:
            raise ConfigError(f"suite {c.suite} has no train split to distill from")

    def traces(self, graph: GraphSpec, model: Any, seed: int) -> tuple[list[dict[str, Any]], Any]:
        """Pairs from `graph`'s solved train items (run, then traced from the call cache)."""
        from agentmeta.agents.graph import GraphAgent
        from agentmeta.eval import evaluate
        from agentmeta.eval.runner import SampleModel

        agent = GraphAgent(graph)
        res = evaluate(agent, self.train, model=model, seed=seed, concurrency=8)
        solved = {r.id for r in res.records if r.outcome == "scored" and r.score >= 1.0}
        pairs = []
        for sample in self.train.samples:
            if sample.id in solved:
                outputs = agent.trace(sample.input, SampleModel(model, seed=seed, sample_id=sample.id))[1]
                pairs += pairs_from(graph, outputs, sample.input)
        return pairs, res

    def setup(self, base: str, tokenizer: Any) -> None:
        from agentmeta.agents.graph import GraphAgent
        from agentmeta.eval import evaluate
        from agentmeta.models import get_model
        from agentmeta.models.base import Model
        from agentmeta.models.cache import CallCache

        c = self.config
        self.cache_dir = Path(tempfile.mkdtemp(prefix="agentmeta-distill-"))  # the teacher's calls, to trace them
        hf = get_model(f"hf/{base}", cache=False, shared=False)
        model = Model(hf.provider, cache=CallCache(self.cache_dir / "teacher.sqlite"))
        pairs: list[dict[str, Any]] = []
        self.teacher_train: list[float] = []
        for j in range(c.k):
            log.info("teacher %s on %d train items (run %d of %d)", self.teacher_name, len(self.train.samples), j + 1, c.k)
            got, res = self.traces(self.teacher, model, c.seed + j)
            pairs += got
            self.teacher_train.append(res.mean)
            log.info("  solved %.0f%%: %d training pairs", 100 * res.mean, len(got))
        self.pairs = self._fit(pairs, tokenizer)
        if not self.pairs:
            raise ConfigError(
                f"the teacher solved none of {len(self.train.samples)} train items (or no pair fits max_length): nothing to distill"
            )
        if self.test:
            log.info("teacher on %d test samples; then the student before training", len(self.test.samples))
        self.teacher_test = (
            evaluate(GraphAgent(self.teacher), self.test, model=model, seed=c.seed, concurrency=8) if self.test else None
        )
        self.evals = [(GraphAgent(self.student), self.test)] if self.test else []
        model.close()  # the teacher's copy of the base model is not needed while training

    def _fit(self, pairs: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
        seen, out = set(), []
        for p in pairs:
            key = json.dumps(p, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            text = tokenizer.apply_chat_template(p["prompt"] + p["completion"], tokenize=False)
            if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= self.config.max_length:
                out.append(p)
        return out

    def dataset(self) -> Any:
        datasets = require("datasets", INSTALL, "datasets")
        return datasets.Dataset.from_list(self.pairs)

    def trainer_settings(self) -> dict[str, Any]:
        c = self.config
        return {"per_device_train_batch_size": c.batch_size, "max_length": c.max_length, "completion_only_loss": True}

    def data(self) -> dict[str, Any]:
        c = self.config
        return {
            "suite": c.suite, "teacher": self.teacher_name, "teacher_source": self.teacher.model_dump(mode="json"),
            "train_items": len(self.train.samples), "k": c.k, "pairs": len(self.pairs),
            "teacher_train_score": self.teacher_train,
        }  # fmt: skip

    def settings(self) -> dict[str, Any]:
        return {"batch_size": self.config.batch_size, "max_length": self.config.max_length}

    def metrics(self, trainer: Any, timer: Any) -> dict[str, Any]:
        return {"train_loss": timer.logs.get("train_loss", timer.logs.get("loss"))}

    def report(
        self, where: Path, info: AdapterInfo, table: list[dict[str, Any]], before: list[Any], after: list[Any]
    ) -> None:
        from agentmeta.eval.stats import compare_results

        def tokens(res: Any) -> float:
            return sum(r.prompt_tokens + r.completion_tokens for r in res.records) / max(len(res.records), 1)

        if table and self.teacher_test is not None:
            t = self.teacher_test
            cmp = compare_results(after[0], t, seed=self.config.seed, allow_partial=True)
            table[0].update(
                student_tokens_before=tokens(before[0]), student_tokens_after=tokens(after[0]),
                teacher=t.mean, teacher_tokens=tokens(t), vs_teacher=cmp.mean_diff,
                vs_teacher_low=cmp.low, vs_teacher_high=cmp.high,
            )  # fmt: skip
            info.metrics["eval"] = table

    def candidate_name(self, final: Path) -> str:
        return f"distill-{final.name}"


def train_distill(
    config: DistillConfig, *, progress: ProgressFn | None = None, callbacks: list[Any] | None = None
) -> TrainResult:
    """Distill `config.teacher` into a LoRA adapter (see the module); the before/after table
    compares the student (the teacher without demonstrations) on the base model and on the adapter,
    with the teacher beside it."""
    algo = Distill(config)
    try:
        return run_loop(algo, progress=progress, callbacks=callbacks)
    finally:
        if getattr(algo, "cache_dir", None) is not None:
            shutil.rmtree(algo.cache_dir, ignore_errors=True)  # the teacher's calls, whether the run ends or fails
