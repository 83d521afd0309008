from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentmeta.agents.builtin import get_agent, list_agents, majority
from agentmeta.errors import ConfigError, DataError
from agentmeta.eval import EvalResult, Sample, Suite, evaluate
from agentmeta.eval.stats import compare_results
from agentmeta.models import GenerateRequest
from agentmeta.prompts import render


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
    assert result.ci_high == 1.0 and 0.5 < result.ci_low < 1.0  # 12 of 12: not a zero-width interval
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
    seeds = [r.seed for r in model.provider.requests]
    assert None not in seeds and len(set(seeds)) == 3  # one per sample
    assert {r.max_tokens for r in model.provider.requests} == {16}
    again = mock_model(lambda req: "Answer: 0")
    evaluate("cot", arithmetic_suite(3), model=again, seed=7, max_tokens=16)
    assert sorted(r.seed for r in again.provider.requests) == sorted(seeds)  # same run seed: same seeds
    other = mock_model(lambda req: "Answer: 0")
    evaluate("cot", arithmetic_suite(3), model=other, seed=8, max_tokens=16)
    assert not {r.seed for r in other.provider.requests} & set(seeds)


def test_identical_calls_in_a_sample_get_distinct_reproducible_seeds(mock_model: Callable[..., Any]) -> None:
    """ADAS-style Self-Consistency makes five identical sampled calls: they must not share one seed
    (five identical samples), and must get the same five seeds on every run."""

    def five_calls(task_input: str, model: Any) -> str:
        return [model.generate(task_input, temperature=0.8).text for _ in range(5)][0]

    model = mock_model(lambda req: "Answer: 1")
    evaluate(five_calls, arithmetic_suite(2), model=model, seed=3)
    by_prompt: dict[str, list[int]] = {}
    for r in model.provider.requests:
        by_prompt.setdefault(r.messages[-1].content, []).append(r.seed)  # type: ignore[arg-type]
    assert all(len(v) == 5 and len(set(v)) == 5 for v in by_prompt.values())
    again = mock_model(lambda req: "Answer: 1")
    evaluate(five_calls, arithmetic_suite(2), model=again, seed=3)
    assert sorted(r.seed for r in again.provider.requests) == sorted(  # type: ignore[type-var]
        r.seed for r in model.provider.requests
    )


def test_agent_seed_is_kept(mock_model: Callable[..., Any]) -> None:
    def fixed(task_input: str, model: Any) -> str:
        return model.generate(task_input, seed=123).text

    model = mock_model(lambda req: "Answer: 0")
    evaluate(fixed, arithmetic_suite(2), model=model, seed=5)
    assert {r.seed for r in model.provider.requests} == {123}


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


# ----------------------------------------------------------------------------- failures attributed


def _flaky_model(mock_model: Callable[..., Any], bad: set[str], times: int | None) -> Any:
    """A model whose calls about the inputs in `bad` fail `times` times (None: always) like a dead server."""
    from agentmeta.errors import ModelCallError

    failures: dict[str, int] = {}
    lock = threading.Lock()

    def fail(req: GenerateRequest) -> BaseException | None:
        text = req.messages[-1].content
        hit = next((b for b in bad if b in text), None)
        if hit is None:
            return None
        with lock:
            failures[hit] = failures.get(hit, 0) + 1
            if times is None or failures[hit] <= times:
                return ModelCallError("http://127.0.0.1:9/v1 did not answer after 5 attempts")
        return None

    return mock_model(lambda req: f"Answer: {solve(req.messages[-1].content)}", fail=fail)


def test_infra_failure_is_retried_then_scored(mock_model: Callable[..., Any]) -> None:
    model = _flaky_model(mock_model, {"What is 3 + 3"}, times=1)
    result = evaluate("direct", arithmetic_suite(6), model=model, concurrency=1)
    rec = next(r for r in result.records if r.id == "a3")
    assert rec.outcome == "scored" and rec.score == 1.0 and rec.attempts == 2
    assert result.mean == 1.0 and result.n == 6 and result.n_infra == 0 and not result.incomplete


def test_infra_failure_after_retries_is_excluded_and_counted_not_zero(mock_model: Callable[..., Any]) -> None:
    model = _flaky_model(mock_model, {"What is 3 + 3"}, times=None)
    result = evaluate("direct", arithmetic_suite(12), model=model, concurrency=4, max_infra_share=0.1)
    rec = next(r for r in result.records if r.id == "a3")
    assert rec.outcome == "infra_error" and rec.attempts == 3 and "did not answer" in (rec.error or "")
    assert result.n_infra == 1 and result.n == 11 and result.n_errors == 0
    assert result.mean == 1.0  # the lost sample is not the agent's 0
    assert "a3" not in result.score_by_id() and len(result.scores) == 11
    assert not result.incomplete  # 1 of 12 is within the 10% allowance
    many = evaluate(
        "direct", arithmetic_suite(12), model=_flaky_model(mock_model, {"What is 3 + 3", "What is 5 + 5"}, None),
        concurrency=4, infra_retries=0,
    )  # fmt: skip
    assert many.n_infra == 2 and many.incomplete and many.mean == 1.0


def test_agent_that_swallows_an_infra_error_is_still_attributed_to_infra(
    mock_model: Callable[..., Any],
) -> None:
    def stubborn(task_input: str, model: Any) -> str:
        try:
            return model.generate(task_input).text
        except Exception:  # noqa: BLE001 - an agent that hides the failure and guesses
            return "Answer: 0"

    model = _flaky_model(mock_model, {"What is 2 + 2"}, times=None)
    result = evaluate(stubborn, arithmetic_suite(4), model=model, infra_retries=1)
    rec = next(r for r in result.records if r.id == "a2")
    assert rec.outcome == "infra_error" and rec.answer is None and result.n_infra == 1


def test_agent_errors_still_score_zero_with_their_reason(mock_model: Callable[..., Any]) -> None:
    def broken(task_input: str, model: Any) -> str:
        if "3 + 3" in task_input:
            raise KeyError("missing field")
        return f"Answer: {solve(task_input)}"

    result = evaluate(broken, arithmetic_suite(4), model=mock_model())
    rec = next(r for r in result.records if r.id == "a3")
    assert rec.outcome == "agent_error" and rec.score == 0.0 and "KeyError" in (rec.error or "")
    assert result.n == 4 and result.n_errors == 1 and result.mean == 0.75 and result.n_infra == 0


def test_duplicate_sample_ids_are_an_error(mock_model: Callable[..., Any]) -> None:
    suite = arithmetic_suite(3)
    suite.samples.append(suite.samples[0])
    with pytest.raises(DataError, match="appears twice"):
        evaluate("direct", suite, model=mock_model())


def test_code_agent_evaluation_replays_from_the_cache_with_zero_new_calls(tmp_path: Any) -> None:
    """ADAS-style code agents run in the sandbox; their calls come back over a pipe without seeds.
    The runner seeds them, so a repeated evaluation with the same seed is served by the cache."""
    from agentmeta.agents.code import CodeAgent
    from agentmeta.models import Model
    from agentmeta.models.cache import CallCache
    from agentmeta.models.mock import MockProvider

    source = (Path(__file__).resolve().parents[2] / "archive" / "code" / "self_consistency.py").read_text()
    agent = CodeAgent(source, name="cot-sc-code")

    def reply(req: GenerateRequest) -> str:
        import json as _json

        return _json.dumps({"thinking": "add", "answer": str(solve(req.messages[-1].content))})

    provider = MockProvider(reply)
    model = Model(provider, cache=CallCache(tmp_path / "calls.sqlite"))
    first = evaluate(agent, arithmetic_suite(3), model=model, seed=11, concurrency=3)
    assert first.n_errors == 0 and first.n_infra == 0, first.errors
    calls = len(provider.requests)
    assert calls >= 3 * 5  # five sampled chains per sample (and their votes)
    assert all(r.seed is not None for r in provider.requests)
    sampled = [r.seed for r in provider.requests if r.temperature > 0]
    assert len(set(sampled)) == len(sampled)  # identical sampled calls got distinct seeds
    again = evaluate(agent, arithmetic_suite(3), model=model, seed=11, concurrency=3)
    assert len(provider.requests) == calls  # zero new model calls
    assert [r.answer for r in again.records] == [r.answer for r in first.records]
    assert again.usage.calls == first.usage.calls > 0  # all cached: the records count what the agent costs
    assert (
        again.usage.total_tokens == first.usage.total_tokens and model.usage.cached_calls == again.usage.calls
    )


@pytest.mark.parametrize("agent_file", ["self_refine.py", "llm_debate.py"])
def test_code_agents_that_forward_outputs_replay_with_zero_cache_misses(
    tmp_path: Any, agent_file: str
) -> None:
    """Self-Refine and LLM Debate quote earlier agents by name and id in later prompts ("... by
    Critic Agent 3f09a1:"); the ids come from the run seed and the sample, so a second seeded run
    sends the same prompts: every call is a cache hit and the answers are equal."""
    from agentmeta.agents.code import CodeAgent
    from agentmeta.models import Model
    from agentmeta.models.cache import CallCache
    from agentmeta.models.mock import MockProvider

    source = (Path(__file__).resolve().parents[2] / "archive" / "code" / agent_file).read_text()
    agent = CodeAgent(source, name=agent_file)

    def reply(req: GenerateRequest) -> str:
        import json as _json

        # the reply depends on the whole prompt, ids included, as a real model's would
        digest = sum(map(ord, "".join(m.content for m in req.messages))) % 7
        return _json.dumps(
            {"thinking": f"t{digest}", "answer": str(digest), "feedback": "check", "correct": "False"}
        )

    provider = MockProvider(reply)
    model = Model(provider, cache=CallCache(tmp_path / "calls.sqlite"))
    first = evaluate(agent, arithmetic_suite(2), model=model, seed=5, concurrency=2)
    assert first.n_errors == 0 and first.n_infra == 0, first.errors
    calls = len(provider.requests)
    assert calls >= 2 * 3
    assert any(" by " in m.content for r in provider.requests for m in r.messages)  # ids are quoted
    again = evaluate(agent, arithmetic_suite(2), model=model, seed=5, concurrency=2)
    assert len(provider.requests) == calls  # zero cache misses
    assert [r.answer for r in again.records] == [r.answer for r in first.records]
    other = evaluate(agent, arithmetic_suite(2), model=model, seed=6, concurrency=2)
    assert len(provider.requests) > calls and other.n_errors == 0  # another seed: other ids, new calls


def test_cached_calls_count_their_cost_in_records_not_in_spend(tmp_path):
    """tok/sample is what the agent costs: a replay served by the call cache records the same tokens
    as the cold run, while the model's spend (what budgets count) grows by nothing."""
    from agentmeta.models import Model
    from agentmeta.models.cache import CallCache
    from agentmeta.models.mock import MockProvider

    model = Model(MockProvider(lambda req: "Answer: 4"), cache=CallCache(tmp_path / "calls.sqlite"))
    agent, _ = get_agent("cot")
    cold = evaluate(agent, arithmetic_suite(3), model=model, seed=3)
    spent = model.usage.total_tokens
    warm = evaluate(agent, arithmetic_suite(3), model=model, seed=3)
    assert spent > 0 and model.usage.total_tokens == spent  # the replay spent nothing
    assert model.usage.cached_calls == warm.usage.calls > 0
    assert warm.usage.total_tokens == cold.usage.total_tokens > 0  # ...but records what the agent costs
    assert [r.prompt_tokens for r in warm.records] == [r.prompt_tokens for r in cold.records]


def test_a_stalled_model_under_a_code_agent_is_infrastructure_not_the_agents_zero() -> None:
    """The model takes longer than the sandbox's model-call limit: each sample is retried and then
    left out as an infrastructure error; none is scored 0 for the agent."""
    import time as _time

    from agentmeta.agents.code import CodeAgent
    from agentmeta.models import Model
    from agentmeta.models.mock import MockProvider
    from agentmeta.sandbox import Sandbox, SandboxLimits

    source = (Path(__file__).resolve().parents[2] / "archive" / "code" / "chain_of_thought.py").read_text()
    limits = SandboxLimits(cpu_seconds=5, memory_mb=512, wall_seconds=1.0, model_call_seconds=0.5)

    def slow(req: GenerateRequest) -> str:
        _time.sleep(1.0)
        return '{"thinking": "", "answer": "0"}'

    with Sandbox(limits, pool_size=2) as box:
        agent = CodeAgent(source, name="cot-code", sandbox=box)
        result = evaluate(
            agent, arithmetic_suite(2), model=Model(MockProvider(slow)), seed=1, infra_retries=1
        )
    assert [r.outcome for r in result.records] == ["infra_error", "infra_error"]
    assert all("ModelStallError" in (r.error or "") and r.attempts == 2 for r in result.records)
    assert result.n == 0 and result.n_infra == 2 and result.incomplete


def test_a_worker_killed_on_every_attempt_is_the_agents_error(mock_model: Callable[..., Any]) -> None:
    """A job that raises SIGKILL on itself by a route the audit hook does not see looks like an
    outside kill once; a seeded sample replays it on every retry, so it is counted as the agent's."""
    from agentmeta.agents.code import CodeAgent

    source = "def forward(self, taskInfo):\n    import signal\n    signal.raise_signal(signal.SIGKILL)\n"
    result = evaluate(
        CodeAgent(source, name="suicidal"), arithmetic_suite(1), model=mock_model(), seed=1, infra_retries=1
    )
    rec = result.records[0]
    assert rec.outcome == "agent_error" and rec.score == 0.0 and rec.attempts == 2
    assert "WorkerKilledError" in (rec.error or "") and "counted as the agent's" in (rec.error or "")
