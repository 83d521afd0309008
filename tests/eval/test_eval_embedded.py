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
