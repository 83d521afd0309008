"""Per-node models, cascades and cross-model sampling in graph agents."""

from __future__ import annotations

import pytest

from agentmeta import get_model
from agentmeta.agents.graph import GraphAgent, parse_spec
from agentmeta.errors import InvalidAgentError
from agentmeta.eval import Sample, Suite, evaluate

M = "mock/tests.agents.cascade_models:"


def _suite(n: int = 4) -> Suite:
    samples = [Sample(id=f"s{i}", input=f"What is {i} + 3?", target=str(i + 3)) for i in range(n)]
    return Suite(name="adds", samples=samples, scorer={"name": "numeric"})  # type: ignore[arg-type]


def cascade(first: str, agree: float = 0.6) -> GraphAgent:
    return GraphAgent(parse_spec({"name": "cascade", "nodes": [
        {"id": "c", "type": "cascade", "prompt": "{input}", "n": 5, "agree": agree, "models": [M + first, M + "strong"]},
    ]}))  # fmt: skip


def test_a_cascade_asks_the_large_model_only_when_the_small_one_disagrees():
    base = get_model("mock", outputs="unused", cache=False)
    unsure = evaluate(cascade("unsure"), _suite(), model=base, seed=1)
    assert unsure.mean == 1.0  # the small model's 5 answers disagree: the large one answered
    rec = unsure.records[0]
    assert set(rec.tokens_by_model) == {M + "unsure", M + "strong"} and rec.calls == 2
    assert sum(rec.tokens_by_model.values()) == rec.prompt_tokens + rec.completion_tokens
    sure = evaluate(cascade("sure_wrong"), _suite(), model=base, seed=1)
    assert sure.mean == 0.0 and all(r.calls == 1 for r in sure.records)  # it agreed: no escalation
    assert base.provider.requests == []  # no call went to the run's own model
    everyone = evaluate(cascade("sure_wrong", agree=1.0), _suite(), model=base, seed=1)
    assert everyone.mean == 0.0  # 5 of 5 agree, which meets agree=1.0


def test_cross_model_sampling_spreads_samples_and_votes():
    agent = GraphAgent(parse_spec({"name": "mix", "nodes": [
        {"id": "s", "type": "sample", "prompt": "{input}", "n": 5, "models": [M + "strong", M + "sure_wrong"]},
        {"id": "v", "type": "vote"},
    ]}))  # fmt: skip
    res = evaluate(agent, _suite(), model=get_model("mock", outputs="unused", cache=False), seed=2)
    assert res.mean == 1.0  # 3 right (strong takes the extra sample) beat 2 wrong
    assert set(res.records[0].tokens_by_model) == {M + "strong", M + "sure_wrong"}


def test_a_node_may_name_its_own_model_and_the_run_replays():
    agent = GraphAgent(parse_spec({"name": "two", "nodes": [
        {"id": "draft", "type": "llm", "prompt": "{input}", "model": M + "sure_wrong"},
        {"id": "final", "type": "llm", "prompt": "{input}"},
    ]}))  # fmt: skip
    base = get_model("mock", outputs=lambda req: "Answer: 42", cache=False)
    first = evaluate(agent, _suite(2), model=base, seed=4)
    assert len(base.provider.requests) == 2  # only the second node used the run's model
    assert first.records[0].tokens_by_model.keys() == {"mock", M + "sure_wrong"}
    again = evaluate(agent, _suite(2), model=base, seed=4)
    assert [r.answer for r in again.records] == [r.answer for r in first.records]


def test_cascade_specs_are_checked():
    with pytest.raises(InvalidAgentError, match="at least two models"):
        parse_spec({"name": "x", "nodes": [{"id": "c", "type": "cascade", "models": [M + "strong"]}]})
    with pytest.raises(InvalidAgentError, match="applies to cascade and sample"):
        parse_spec(
            {"name": "x", "nodes": [{"id": "c", "type": "llm", "models": [M + "strong", M + "unsure"]}]}
        )


@pytest.mark.embedded
def test_a_cascade_runs_on_the_embedded_model_with_two_specs(embedded, dense_model_dir):
    """smollm2 first; when its 3 samples disagree, the same weights loaded by another provider
    (`hf/<dense dir>`) are asked: two specs, tokens counted per spec."""
    agent = GraphAgent(parse_spec({"name": "cascade", "nodes": [
        {"id": "c", "type": "cascade", "n": 3, "agree": 1.0, "max_tokens": 48,
         "models": ["smollm2", f"hf/{dense_model_dir}"]},
    ]}))  # fmt: skip
    res = evaluate(agent, _suite(2), model=embedded, seed=0)
    assert res.n_errors == 0 and res.n_infra == 0, res.errors
    for rec in res.records:
        assert rec.answer
        if rec.calls == 2:  # escalated: both specs' tokens counted
            assert len(rec.tokens_by_model) == 2 and "smollm2" in rec.tokens_by_model
        else:  # the run's own model agreed with itself
            assert rec.calls == 1 and rec.tokens_by_model == {}
