"""Both loops for a few real steps on the embedded model (CPU): adapters load and change the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# training runs in the user's terminal: no deprecation warning from transformers, peft or TRL
pytestmark = [pytest.mark.embedded, pytest.mark.filterwarnings("error::FutureWarning")]

PROBE = "Spell this word backward: orange"


def last_logits(base: str, adapter: Path | None):  # noqa: ANN201
    """Next-token logits of a fixed prompt, from get_model's provider (base or base + adapter)."""
    import torch

    from agentmeta.models import get_model

    m = get_model(f"hf/{base}", adapter=str(adapter) if adapter else None, cache=False, shared=False)
    p = m.provider
    ids = torch.tensor([p.tokenizer(PROBE)["input_ids"]])
    with torch.no_grad():
        return p.model(input_ids=ids).logits[0, -1].float()


def assert_adapter_changes_model(base: str, adapter: Path) -> None:
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    info = json.loads((adapter / "agentmeta-adapter.json").read_text())
    assert info["base_model"] == base and info["steps"] >= 1
    diff = (last_logits(base, adapter) - last_logits(base, None)).abs().max().item()
    assert diff > 1e-3, diff


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentmeta", "train", *args], capture_output=True, text=True, timeout=300
    )


def test_metaicl_command_trains_and_prints_before_after(tmp_path: Path, dense_model_dir: Path):
    from agentmeta.archive import Archive
    from agentmeta.train.metaicl import MetaICLConfig

    out, db = tmp_path / "metaicl", tmp_path / "a.db"
    p = cli(
        "metaicl", "--train-suites", "rg/basic_arithmetic,rg/word_sorting", "--eval-suites", "rg/spell_backward",
        "--k", "2", "--steps", "2", "--samples-per-suite", "6", "--eval-limit", "3", "--lr", "5e-3",
        "--max-length", "256", "--max-new-tokens", "12", "--output", str(out), "--archive", str(db),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "rg/spell_backward" in p.stdout and "before" in p.stdout and "after" in p.stdout
    saved = json.loads((out / "metaicl-eval.json").read_text())
    row = saved["table"][0]
    assert row["suite"] == "rg/spell_backward" and row["n"] == 3 and row["k"] == 2
    assert [r["id"] for r in saved["before"][0]["records"]] == [r["id"] for r in saved["after"][0]["records"]]
    assert_adapter_changes_model(str(dense_model_dir), out)
    config = MetaICLConfig.from_adapter(out)
    assert config.train_suites == ["rg/basic_arithmetic", "rg/word_sorting"] and config.eval_suites == [
        "rg/spell_backward"
    ]
    assert (config.k, config.steps, config.learning_rate, config.archive) == (2, 2, 5e-3, str(db))
    with Archive(db) as arch:
        (cand,) = [c for c in arch.candidates() if c.kind == "model"]
        assert cand.source == str(out) and cand.metadata["loop"] == "metaicl"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.db", "metaicl"]


def f1_suite(tmp_path: Path) -> str:
    rows = [
        {
            "id": f"q{i}",
            "input": f"Write a short sentence about the number {i}.",
            "target": "the a is of to and in",
            "split": "train" if i < 4 else "test",
        }
        for i in range(8)
    ]
    f = tmp_path / "words.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"{f}?scorer=f1"


def test_grpo_command_trains_a_loadable_adapter(tmp_path: Path, dense_model_dir: Path):
    out = tmp_path / "grpo"
    p = cli(
        "grpo", "--suite", f1_suite(tmp_path), "--steps", "2", "--num-generations", "2",
        "--max-new-tokens", "16", "--eval-limit", "2", "--lr", "2e-2", "--output", str(out), "--no-register",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "before" in p.stdout and "rewards per step" in p.stdout
    assert_adapter_changes_model(str(dense_model_dir), out)


def test_grpo_trainer_receives_the_suite_scorer_values(tmp_path: Path, dense_model_dir: Path):
    from agentmeta.eval.suites import load_suite
    from agentmeta.train.grpo import GRPOConfig, train_grpo

    spec = f1_suite(tmp_path)
    rewards: list = []
    config = GRPOConfig(
        suite=spec, output=tmp_path / "out", steps=2, train_limit=4, eval_limit=0, num_generations=2,
        max_new_tokens=16, learning_rate=1e-3,
    )  # fmt: skip
    result = train_grpo(config, rewards_out=rewards)
    assert GRPOConfig.from_adapter(result.output) == config  # the metadata holds the run's settings
    reward = rewards[0]
    suite = load_suite(spec, split="train", limit=4)  # GRPO trains on the train split
    by_id = {s.id: s for s in suite.samples}
    assert len(reward.calls) == 4  # 2 steps x 2 completions
    for sid, text, value in reward.calls:
        assert value == suite.score(text, by_id[sid]).value
    logged = [r["rewards/score/mean"] for r in result.info.metrics["rewards"]]
    values = [c[2] for c in reward.calls]
    assert logged == pytest.approx([sum(values[:2]) / 2, sum(values[2:]) / 2], abs=1e-6)


def test_distill_command_trains_on_verified_teacher_traces(tmp_path: Path, dense_model_dir: Path):
    """A graph seed with two demonstrations is the teacher: its solved train items give pairs
    without the demonstrations, the adapter changes the model, the table has the teacher beside."""
    from agentmeta.archive import Archive
    from agentmeta.train.distill import DistillConfig

    rows = [{"id": f"q{i}", "input": f"What is {i % 5 + 1} + {i % 3 + 1}?", "target": str(i % 5 + i % 3 + 2),
             "split": "train" if i < 8 else "test"} for i in range(11)]  # fmt: skip
    data = tmp_path / "adds.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(json.dumps({"name": "shown two", "nodes": [{
        "id": "a", "type": "llm", "max_tokens": 48, "prompt": "Task: {input}\n\nEnd with 'Answer: <number>'.",
        "demos": [{"input": "What is 2 + 2?", "answer": "2 + 2 = 4"}, {"input": "What is 3 + 1?", "answer": "3 + 1 = 4"}],
    }]}))  # fmt: skip
    out, db = tmp_path / "distill", tmp_path / "a.db"
    p = cli(
        "distill", "--suite", f"{data}?scorer=numeric", "--teacher", str(teacher), "--steps", "2", "--batch-size", "2",
        "--eval-limit", "3", "--max-new-tokens", "48", "--lr", "5e-3", "--output", str(out), "--archive", str(db),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "teacher" in p.stdout and "vs teacher" in p.stdout
    info = json.loads((out / "agentmeta-adapter.json").read_text())
    assert info["loop"] == "distill" and info["data"]["pairs"] >= 1 and info["data"]["train_items"] == 8
    row = info["metrics"]["eval"][0]
    assert row["n"] == 3 and {"teacher", "teacher_tokens", "vs_teacher"} <= set(row)
    assert row["teacher_tokens"] > row["student_tokens_before"]  # the student leaves the demonstrations out
    assert_adapter_changes_model(str(dense_model_dir), out)
    assert DistillConfig.from_adapter(out).teacher == str(teacher)
    with Archive(db) as arch:
        assert [c.metadata["loop"] for c in arch.candidates() if c.kind == "model"] == ["distill"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.db", "adds.jsonl", "distill", "teacher.yaml"]
