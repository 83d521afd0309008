"""Adaptive-compute graph nodes: `bandit` (a reasoning strategy chosen per input, statistics
learned on train) and `tree_search` (AB-MCTS over answers with a target-free verifier)."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from agentmeta import get_model
from agentmeta.agents.adaptive import ARMS, answer_key, arm_spec, rank_arms
from agentmeta.agents.graph import GraphAgent, parse_spec
from agentmeta.errors import InvalidAgentError
from agentmeta.eval import Sample, Suite, evaluate
from agentmeta.registry import registry
from agentmeta.search.adaptive import add_bandit, add_tree_search, learn_bandit
from agentmeta.search.canonical import canonical
from agentmeta.search.evolve import mutations
from agentmeta.search.operators import NotApplicable, OperatorContext

M = "mock/tests.agents.adaptive_models:"


def _suite(n: int = 4) -> Suite:
    samples = [Sample(id=f"s{i}", input=f"What is {i} + {i + 3}?", target=str(2 * i + 3)) for i in range(n)]
    return Suite(name="sums", samples=samples, scorer={"name": "numeric"})  # type: ignore[arg-type]


def bandit(stats: dict | None = None, arms=("direct", "cot"), pulls: int = 1, policy: str = "ucb") -> GraphAgent:
    node = {"id": "b", "type": "bandit", "arms": list(arms), "policy": policy, "pulls": pulls,
            "stats": stats or {}}  # fmt: skip
    return GraphAgent(parse_spec({"name": "bandit", "nodes": [node]}))


def test_registered_node_types_are_listed_and_checked():
    assert {"llm", "sample", "vote", "bandit", "tree_search"} <= set(registry.names("node"))
    with pytest.raises(InvalidAgentError, match="unknown type 'nope'; registered: llm"):
        parse_spec({"nodes": [{"id": "x", "type": "nope"}]})
    with pytest.raises(InvalidAgentError, match="unknown arm"):
        parse_spec({"nodes": [{"id": "b", "type": "bandit", "arms": ["cot", "magic"]}]})
    with pytest.raises(InvalidAgentError, match="at least two different arms"):
        parse_spec({"nodes": [{"id": "b", "type": "bandit", "arms": ["cot", "cot"]}]})
    with pytest.raises(InvalidAgentError, match="demos apply"):
        parse_spec({"nodes": [{"id": "b", "type": "bandit", "arms": ["cot", "direct"],
                               "demos": [{"input": "1", "answer": "1"}]}]})  # fmt: skip


def test_policies_rank_arms_by_their_statistics():
    stats = {"cot": [9.0, 10.0], "direct": [1.0, 10.0]}
    assert rank_arms(["direct", "cot"], stats, "ucb", random.Random(0))[0] == "cot"
    assert rank_arms(["direct", "cot"], {"cot": [5.0, 5.0]}, "ucb", random.Random(0))[0] == "direct"  # unpulled first
    firsts = [rank_arms(["direct", "cot"], stats, "thompson", random.Random(s))[0] for s in range(50)]
    assert firsts.count("cot") > 45


def test_a_bandit_answers_with_the_arm_its_statistics_favour():
    model = get_model(M + "strategist", cache=False)
    good = evaluate(bandit({"cot": [9.0, 10.0], "direct": [1.0, 10.0]}), _suite(), model=model, seed=1)
    bad = evaluate(bandit({"cot": [1.0, 10.0], "direct": [9.0, 10.0]}), _suite(), model=model, seed=1)
    assert good.mean == 1.0 and bad.mean == 0.0
    assert all(r.calls == 1 for r in good.records + bad.records)
    again = evaluate(bandit({"cot": [9.0, 10.0], "direct": [1.0, 10.0]}), _suite(), model=model, seed=1)
    assert [r.answer for r in again.records] == [r.answer for r in good.records]


def test_online_pulls_stop_when_two_arms_agree():
    model = get_model(M + "strategist", cache=False)
    stats = {"direct": [9.0, 10.0], "cot": [5.0, 10.0], "reflect": [1.0, 10.0]}
    res = evaluate(bandit(stats, arms=("direct", "cot", "reflect"), pulls=3), _suite(2), model=model, seed=1)
    # direct (wrong) and cot (right) disagree, so reflect is tried; it agrees with cot: the majority is right
    assert res.mean == 1.0
    trace = GraphAgent(bandit(stats, arms=("direct", "cot", "reflect"), pulls=3).spec).trace(
        "What is 1 + 4?", model)[1]["b"]  # fmt: skip
    assert trace.startswith("Arms: direct, cot, reflect")
    two = bandit({"cot": [9.0, 10.0], "sample_vote": [8.0, 10.0], "direct": [0.0, 10.0]},
                 arms=("cot", "sample_vote", "direct"), pulls=3)  # fmt: skip
    assert two.trace("What is 1 + 4?", model)[1]["b"].startswith("Arms: cot, sample_vote\n")  # agreed: stop


def test_learning_on_train_finds_the_better_arm():
    train = [Sample(id=f"t{i}", input=f"What is {i} + 1?", target=str(i + 1)) for i in range(30)]
    runs: list = []

    def evaluate_arm(spec, samples):
        runs.append([s.id for s in samples])
        good = "Think step by step" in spec.source
        return SimpleNamespace(records=[SimpleNamespace(id=s.id, score=float(good), outcome="scored") for s in samples])

    ctx = SimpleNamespace(kind="graph", evaluate=evaluate_arm, train_samples=train)
    graph = bandit(arms=("direct", "cot"), policy="thompson").spec
    learned, info = learn_bandit(ctx, graph, 0, random.Random(3))
    stats = learned.nodes[0].stats
    assert sum(v[1] for v in stats.values()) == 16
    assert stats["cot"][0] == stats["cot"][1] > stats["direct"][0] == 0
    assert stats["cot"][1] > stats["direct"][1]  # Thompson sampling pulled the winner more
    assert {i for r in runs for i in r} <= {s.id for s in train}
    assert info["stats"] == stats
    assert canonical(learned) == canonical(graph)  # learned statistics do not make it another graph


def tree(verifier: str, n: int = 6) -> GraphAgent:
    node = {"id": "t", "type": "tree_search", "prompt": "Task: {input}\n\nAnswer.", "n": n, "verifier": verifier}
    return GraphAgent(parse_spec({"name": "tree", "nodes": [node]}))


@pytest.mark.parametrize("verifier", ["agreement", "self", "python"])
def test_tree_search_finds_the_answer_its_verifier_prefers(verifier):
    model = get_model(M + "explorer", cache=False)
    res = evaluate(tree(verifier), _suite(3), model=model, seed=2)
    assert res.mean == 1.0
    calls = {r.calls for r in res.records}
    # self: one yes/no check per answer; python: one expression per input, run in the sandbox
    assert calls == {"agreement": {6}, "self": {12}, "python": {7}}[verifier]
    again = evaluate(tree(verifier), _suite(3), model=model, seed=2)
    assert [r.answer for r in again.records] == [r.answer for r in res.records]


def test_one_sample_is_plain_sampling_and_usually_wrong():
    model = get_model(M + "explorer", cache=False)
    res = evaluate(tree("agreement", n=1), _suite(3), model=model, seed=2)
    assert res.mean < 1.0  # the tree search, not the model, found the right answers above


COT = parse_spec({"name": "cot", "nodes": [{"id": "a", "type": "llm", "prompt": "Task: {input}\n\nThink."}]})


def test_operators_make_adaptive_nodes_and_are_drawn_only_when_asked():
    child = add_bandit(COT, random.Random(0), OperatorContext())
    node = child.nodes[0]
    assert node.type == "bandit" and node.arms[0] == "cot" and set(node.arms) <= set(ARMS) and not node.stats
    ts = add_tree_search(COT, random.Random(0), OperatorContext()).nodes[0]
    assert ts.type == "tree_search" and ts.prompt == COT.nodes[0].prompt and ts.n in (3, 5)
    pot = parse_spec(json.loads(json.dumps({"nodes": [
        {"id": "p", "type": "llm", "prompt": "{input}"}, {"id": "x", "type": "python", "code": "def tool(i, l): return l"}
    ]})))  # fmt: skip
    with pytest.raises(NotApplicable):
        add_tree_search(pot.model_copy(update={"nodes": pot.nodes[1:]}), random.Random(0), OperatorContext())
    plain = SimpleNamespace(evaluate=None, trace=None, train_samples=[], models=[], adaptive=False)
    assert not {"add_bandit", "add_tree_search"} & set(mutations(plain))
    assert {"add_bandit", "add_tree_search"} <= set(mutations(SimpleNamespace(**{**vars(plain), "adaptive": True})))


def test_an_arm_is_a_graph_with_the_nodes_role_and_budget():
    node = parse_spec({"nodes": [{"id": "b", "type": "bandit", "arms": ["cot", "program_of_thought"],
                                  "role": "math teacher", "max_tokens": 300}]}).nodes[0]  # fmt: skip
    spec = arm_spec("program_of_thought", node)
    assert [n.type for n in spec.nodes] == ["llm", "python"]
    assert spec.nodes[0].role == "math teacher" and spec.nodes[0].max_tokens == 300


ARITH = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"


@pytest.mark.embedded
def test_adaptive_nodes_run_on_the_embedded_model(embedded, tmp_path):
    """A bandit learned on train samples through a campaign's own train runs, then a tree search,
    both on the real model: the statistics count the pulls, the runs replay."""
    from agentmeta.archive import Archive
    from agentmeta.eval import load_suite
    from agentmeta.search import Campaign, SearchConfig

    config = SearchConfig(suite=ARITH, kind="graph", strategy="random", seeds=["cot"], iterations=0,
                          confirm=False, concurrency=8, adaptive=True)  # fmt: skip
    pctx = Campaign(config, Archive(tmp_path / "a.db"), model=embedded, meta_model=embedded)._context(0)
    pctx.train_samples = pctx.train_samples[:8]
    graph = parse_spec({"nodes": [{"id": "b", "type": "bandit", "arms": ["direct", "cot"], "max_tokens": 96}]})
    learned, info = learn_bandit(pctx, graph, 0, random.Random(0), samples=4, batch=2)
    stats = learned.nodes[0].stats
    assert sum(p for _, p in stats.values()) == 4 and set(info["learned_on"]) <= {s.id for s in pctx.train_samples}
    val = Suite(name="v", samples=load_suite(ARITH, split="validation", limit=2).samples, scorer={"name": "numeric"})  # type: ignore[arg-type]
    res = evaluate(GraphAgent(learned), val, model=embedded, seed=0)
    assert all(r.outcome == "scored" and r.calls == 1 for r in res.records)
    ts = GraphAgent(parse_spec({"nodes": [{"id": "t", "type": "tree_search", "n": 3, "max_tokens": 96,
                                           "prompt": "Task: {input}\n\nThink step by step, then end with 'Answer: <answer>'."}]}))  # fmt: skip
    first = evaluate(ts, val, model=embedded, seed=0)
    assert all(r.outcome == "scored" and r.calls == 3 and r.answer for r in first.records)


def test_answers_in_words_agree_by_their_last_number():
    assert answer_key("10 + 8 = 18, so our answer is 18.") == answer_key("Answer: 18") == "18"
    assert answer_key("Answer: Paris") == "paris" and answer_key("I am not sure") == "i am not sure"
