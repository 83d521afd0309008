from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agentmeta.errors import ConfigError, DataError
from agentmeta.eval import EvalResult, Sample, Suite, evaluate
from agentmeta.eval.agents import get_agent, list_agents, majority, render
from agentmeta.eval.stats import compare_results
from agentmeta.models import GenerateRequest


def arithmetic_suite(n: int = 12) -> Suite:
    samples = [Sample(id=f"a{i}", input=f"What is {i} + {i}?", target=str(2 * i)) for i in range(n)]
    return Suite(name="toy", samples=samples, scorer={"name": "numeric"})  # type: ignore[arg-type]


def solve(prompt: str) -> int:
    a, b = map(int, re.search(r"What is (\d+) \+ (\d+)", prompt).groups())  # type: ignore[union-attr]
    return a + b


def test_evaluate_scores_every_sample_and_aggregates(mock_model: Callable[..., Any]) -> None:
    model = mock_model(lambda req: f"Reasoning.\nAnswer: {solve(req.messages[-1].content)}")
    result = evaluate("cot", arithmetic_suite(), model=model, concurrency=4)
    assert result.n == 12 and result.n_hits == 12 and result.mean == 1.0 and result.n_errors == 0
    assert result.ci_low == result.ci_high == 1.0
    assert [r.id for r in result.records] == [
        f"a{i}" for i in range(12)
    ]  # suite order, whatever finished first
    assert all(r.calls == 1 and r.completion_tokens > 0 for r in result.records)
    assert result.usage.calls == 12
    assert result.usage.prompt_tokens == sum(r.prompt_tokens for r in result.records) > 0
    assert "step by step" in model.provider.requests[0].messages[-1].content  # the cot template was used


def test_failures_are_recorded_counted_and_score_zero(mock_model: Callable[..., Any]) -> None:
    def flaky(req: GenerateRequest) -> str:
        n = solve(req.messages[-1].content)
        if n % 4 == 0:
            raise RuntimeError(f"backend hiccup on {n}\nsecond line")
        return f"Answer: {n}"

    result = evaluate("direct", arithmetic_suite(), model=mock_model(flaky))
    failed = [r for r in result.records if r.error]
    assert result.n_errors == len(failed) == 6  # 0, 4, ..., 20
    assert all(r.score == 0.0 and r.answer is None for r in failed)
    assert all(r.error.startswith("RuntimeError: backend hiccup on") and "\n" not in r.error for r in failed)
    assert sum(result.errors.values()) == 6
    assert result.mean == pytest.approx(6 / 12)


def test_agent_and_scorer_errors_are_kept_apart(mock_model: Callable[..., Any]) -> None:
    class ReturnsNone:
        name = "broken"

        def run(self, task_input: str, model: Any) -> Any:
            return None

    result = evaluate(ReturnsNone(), arithmetic_suite(3), model=mock_model())
    assert result.agent == "broken" and result.n_errors == 3
    assert result.records[0].error == "TypeError: agent returned NoneType, expected str"
    bad_target = Suite(
        name="t", samples=[Sample(id="x", input="What is 1 + 1?", target="none")], scorer={"name": "numeric"}
    )  # type: ignore[arg-type]
    result = evaluate("direct", bad_target, model=mock_model(["Answer: 2"]))
    assert result.records[0].answer == "Answer: 2"
    assert result.records[0].error is not None and result.records[0].error.startswith("scorer: ConfigError")


def test_custom_agents_plug_in(mock_model: Callable[..., Any]) -> None:
    class Twice:
        name = "twice"

        def run(self, task_input: str, model: Any) -> str:
            first = model.generate("first: " + task_input).text
            model.generate("second")
            return first

    model = mock_model(
        lambda req: (
            f"Answer: {solve(req.messages[-1].content)}" if "first" in req.messages[-1].content else "ok"
        )
    )
    result = evaluate(Twice(), arithmetic_suite(4), model=model, concurrency=2)
    assert result.agent == "twice" and result.mean == 1.0
    assert all(r.calls == 2 for r in result.records)

    def plain(task_input: str, model: Any) -> str:
        return f"Answer: {solve(task_input)}"

    assert evaluate(plain, arithmetic_suite(4), model=mock_model()).mean == 1.0
    with pytest.raises(ConfigError, match="unknown agent 'nope'.*cot-sc"):
        evaluate("nope", arithmetic_suite(), model=mock_model())
    assert {"direct", "cot", "cot-sc"} <= set(list_agents())


def test_runs_are_seeded_and_capped(mock_model: Callable[..., Any]) -> None:
    model = mock_model(lambda req: "Answer: 0")
    evaluate("cot", arithmetic_suite(3), model=model, seed=7, max_tokens=16)
    assert {r.seed for r in model.provider.requests} == {7}
    assert {r.max_tokens for r in model.provider.requests} == {16}


def test_cot_sc_takes_the_majority_of_five_samples(mock_model: Callable[..., Any]) -> None:
    replies = iter(["Answer: 3", "Answer: 4", "so 4.\nAnswer: 4.0", "Answer: 3", "Answer: 4"] * 2)
    lock = threading.Lock()

    def sampled(req: GenerateRequest) -> str:
        assert req.n == 5 and req.temperature == pytest.approx(0.7)
        with lock:
            return next(replies)

    suite = Suite(
        name="t", samples=[Sample(id="s", input="What is 2 + 2?", target="4")], scorer={"name": "numeric"}
    )  # type: ignore[arg-type]
    result = evaluate("cot-sc", suite, model=mock_model(sampled))
    assert result.mean == 1.0 and result.records[0].calls == 1
    assert majority(["Answer: a", "Answer: b", "Answer: b", "nothing"]).endswith("b")
    assert majority(["", ""]) == ""


def test_concurrent_samples_share_model_batches(mock_model: Callable[..., Any]) -> None:
    model = mock_model(lambda req: f"Answer: {solve(req.messages[-1].content)}", batching=True, delay_s=0.05)
    result = evaluate("direct", arithmetic_suite(16), model=model, concurrency=16)
    assert result.mean == 1.0
    assert max(model._batcher.batch_sizes) > 1  # requests from several samples went in one backend call
    assert model.provider.backend_calls < 16


def test_result_round_trips_json_and_paired_comparison(mock_model: Callable[..., Any], tmp_path: Any) -> None:
    """Two agents on the same samples: a paired bootstrap says which is better."""

    def model_fn(req: GenerateRequest) -> str:
        text = req.messages[-1].content
        n = solve(text)
        # thinking step by step fixes the sums the direct answer gets wrong
        return f"Answer: {n}" if "step by step" in text or n % 3 else f"Answer: {n + 1}"

    suite = arithmetic_suite(30)
    cot = evaluate("cot", suite, model=mock_model(model_fn), seed=1)
    direct = evaluate("direct", suite, model=mock_model(model_fn), seed=1)
    assert cot.mean == 1.0 and direct.mean == pytest.approx(20 / 30)
    cmp = compare_results(cot, direct, seed=1)
    assert cmp.n == 30 and cmp.mean_diff == pytest.approx(1 / 3)
    assert cmp.low > 0 and cmp.p_better > 0.99
    path = cot.save(tmp_path / "cot.json")
    assert EvalResult.load(path) == cot
    other = direct.model_copy(
        update={"records": [r.model_copy(update={"id": "z" + r.id}) for r in direct.records]}
    )
    with pytest.raises(DataError, match="share no sample ids"):
        compare_results(cot, other)


def test_evaluate_loads_suites_by_spec(mock_model: Callable[..., Any]) -> None:
    result = evaluate("direct", "gsm8k", model=mock_model(lambda req: "Answer: 0"), limit=4, concurrency=2)
    assert result.suite == "gsm8k" and result.split == "validation" and result.n == 4
    with pytest.raises(ConfigError, match="concurrency"):
        evaluate("direct", "gsm8k", model=mock_model(), concurrency=0)
    empty = Suite(name="empty", samples=[])
    with pytest.raises(DataError, match="no samples"):
        evaluate("direct", empty, model=mock_model())


def test_prompt_templates_render_and_reject_missing_variables() -> None:
    assert render("eval-cot", input="Q?").startswith("Q?\n\nThink step by step")
    assert "Answer: <your answer>" in render("eval-direct", input="Q?")
    with pytest.raises(ConfigError, match="needs input"):
        render("eval-direct")
    agent, name = get_agent("cot-sc", n=3)
    assert name == "cot-sc" and agent.n == 3  # type: ignore[attr-defined]


def test_seed_archive_agents_plug_in_by_name(mock_model: Callable[..., Any]) -> None:
    pytest.importorskip("agentmeta.agents")
    model = mock_model(lambda req: f"Answer: {solve(req.messages[-1].content)}")
    result = evaluate("prompt/cot", arithmetic_suite(4), model=model, concurrency=1)
    assert result.agent == "prompt/cot" and result.n_errors == 0 and result.mean == 1.0
    assert all(r.calls == 1 for r in result.records)
    with pytest.raises(ConfigError, match="seed agents: .*prompt/cot"):
        evaluate("no-such-agent", arithmetic_suite(1), model=model)
