"""The runner and the CLI on the real embedded SmolLM2 model (few samples, short completions)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from agentmeta.eval import evaluate

pytestmark = pytest.mark.embedded

EASY = "rg/basic_arithmetic?min_terms=2&max_terms=2&min_digits=1&max_digits=1"


def test_cot_runs_on_the_embedded_model(embedded: object) -> None:
    result = evaluate("cot", EASY, model=embedded, limit=4, concurrency=4, max_tokens=24)  # type: ignore[arg-type]
    assert result.n == 4 and result.n_errors == 0, result.errors
    assert result.model == "smollm2"
    assert all(r.answer and r.calls == 1 and 0 < r.completion_tokens <= 24 for r in result.records)
    assert 0.0 <= result.ci_low <= result.mean <= result.ci_high <= 1.0


def test_cli_eval_prints_score_and_ci_on_the_embedded_model(cli_app: typer.Typer) -> None:
    result = CliRunner().invoke(
        cli_app, ["eval", "direct", "--suite", EASY, "--limit", "3", "--max-tokens", "12"]
    )
    assert result.exit_code == 0, result.output
    assert "smollm2" in result.stdout and "95% CI" in result.stdout and "basic_arithmetic" in result.stdout


def test_a_seeded_self_refine_evaluation_replays_from_the_cache_on_the_embedded_model(
    embedded, tmp_path
) -> None:
    """Self-Refine quotes its sub-agents' ids in later prompts; with the ids seeded, a second seeded
    run on the real model sends the same prompts: every call is served by the cache, same answers."""
    from pathlib import Path

    from agentmeta.agents.code import CodeAgent
    from agentmeta.models import Model
    from agentmeta.models.cache import CallCache

    source = (Path(__file__).resolve().parents[2] / "archive" / "code" / "self_refine.py").read_text()
    model = Model(embedded.provider, cache=CallCache(tmp_path / "calls.sqlite"))  # type: ignore[attr-defined]
    agent = CodeAgent(source, name="self-refine")
    first = evaluate(agent, EASY, model=model, limit=1, seed=3, max_tokens=32)
    assert first.n_errors == 0 and first.n_infra == 0, first.errors
    calls = model.usage.calls
    assert calls >= 2 and model.usage.cached_calls == 0
    again = evaluate(agent, EASY, model=model, limit=1, seed=3, max_tokens=32)
    assert model.usage.calls - calls == again.usage.calls == first.usage.calls
    assert model.usage.cached_calls == again.usage.calls  # every call of the replay was a cache hit
    assert [r.answer for r in again.records] == [r.answer for r in first.records]
