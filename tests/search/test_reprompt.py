"""Reprompting (`SearchConfig.demos = "reprompt"`): Gibbs-style rounds over train recipes."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from agentmeta import get_model
from agentmeta.agents import AgentSpec, parse_spec, slots_of
from agentmeta.archive import Archive
from agentmeta.eval import Sample
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.bootstrap import bootstrap_slot

GRAPH = AgentSpec(
    kind="graph", name="one call", source=json.dumps({"nodes": [{"id": "think", "type": "llm"}]})
)
TRAIN = [Sample(id=f"t{i}", input=f"item {i}", target="x") for i in range(20)]


def helpful(spec: AgentSpec) -> int:
    """The scripted world: recipes from items numbered 10 and up teach the trick."""
    return sum(int(d["input"].split()[1]) >= 10 for d in slots_of(spec)[0].demos)


def world(calls: list[tuple[int, list[str]]]):
    def evaluate(spec, samples):
        """Odd items are solved anyway; of the others, a set solves as many as it holds helpful
        recipes (so a recipe is worth keeping when it solves *other* items)."""
        calls.append((len(slots_of(spec)[0].demos), [s.id for s in samples]))
        budget, recs = helpful(spec), []
        for s in samples:
            solved = int(s.id[1:]) % 2 == 1
            if not solved and budget > 0:
                solved, budget = True, budget - 1
            recs.append(SimpleNamespace(id=s.id, score=float(solved), outcome="scored", answer="x"))
        return SimpleNamespace(records=recs)

    return evaluate


def ctx(demos: str, calls: list) -> SimpleNamespace:
    return SimpleNamespace(kind="graph", train_samples=TRAIN, evaluate=world(calls), demos=demos,
                           trace=lambda spec, s: {"think": f"worked answer to {s.input}"})  # fmt: skip


def test_reprompt_keeps_recipes_that_solve_other_train_items():
    improved = 0
    for seed in range(6):
        calls: list = []
        first, _ = bootstrap_slot(ctx("bootstrap", []), GRAPH, 0, random.Random(seed), exclude={"t5"}, pool=6)
        child, info = bootstrap_slot(
            ctx("reprompt", calls), GRAPH, 0, random.Random(seed), exclude={"t5"}, pool=6
        )
        rec = info["reprompt"]
        assert rec["score_after"] >= rec["score_before"] and helpful(child) >= helpful(first)
        improved += rec["score_after"] > rec["score_before"]
        assert rec["kept"] >= (rec["score_after"] > rec["score_before"])
        demos = slots_of(child)[0].demos
        assert 0 < len(demos) <= 3 and all(d["verbatim"] for d in demos)
        inputs = {d["input"] for d in demos}
        scoring = set(rec["scoring"])
        assert not inputs & {s.input for s in TRAIN if s.id in scoring}  # a recipe is never scored on itself
        assert "item 5" not in inputs and "t5" not in scoring  # the caller's excluded minibatch stays out
        assert all(i in {s.id for s in TRAIN} for _, ids in calls for i in ids)  # train samples only
    assert improved >= 2  # where the first draw left batch items unsolved, the rounds found better recipes


def test_bootstrap_makes_one_draw_and_reprompt_is_skipped_without_samples_to_spare():
    calls: list = []
    child, info = bootstrap_slot(ctx("bootstrap", calls), GRAPH, 0, random.Random(1), k=3, pool=6)
    assert "reprompt" not in info and len(calls) == 1  # one run over the pool, nothing more
    small = ctx("reprompt", [])
    small.train_samples = TRAIN[:4]
    child, info = bootstrap_slot(small, GRAPH, 0, random.Random(1), k=3, pool=4)
    assert info["reprompt"]["skipped"].startswith("too few train samples")
    assert slots_of(child)[0].demos  # the one draw stands


def test_the_demos_setting_is_part_of_a_campaign_and_reaches_the_strategy(tmp_path):
    from tests.search.test_reflective import careful_task, write_suite

    suite = write_suite(tmp_path)
    base = SearchConfig(
        suite=suite, kind="graph", strategy="bayes", seeds=["cot"], iterations=0, confirm=False
    )
    again = base.model_copy(update={"demos": "reprompt"})
    assert base.identity() != again.identity() and "demos" not in base.identity()
    camp = Campaign(again, Archive(tmp_path / "a.db"), model=get_model("mock", outputs=careful_task))
    assert camp._context(0).demos == "reprompt"
    with pytest.raises(ValueError):
        SearchConfig(suite=suite, demos="gibbs")
    assert parse_spec(GRAPH.source).nodes[0].id == "think"


@pytest.mark.embedded
def test_reprompt_on_the_embedded_model(embedded, tmp_path):
    """Gibbs rounds on the real model, through a campaign's train runs: recipes are the model's own
    worked answers on train samples, scored on other train samples."""
    from agentmeta.agents import find_seed
    from agentmeta.eval import load_suite
    from agentmeta.search.reprompt import reprompt_slot

    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    config = SearchConfig(suite=suite, kind="graph", strategy="bayes", seeds=["cot"], iterations=0,
                          confirm=False, concurrency=8, demos="reprompt")  # fmt: skip
    camp = Campaign(config, Archive(tmp_path / "r.db"), model=embedded, meta_model=embedded)
    pctx = camp._context(0)
    pctx.train_samples = pctx.train_samples[:16]
    seed = find_seed("graph/cot")
    first, info = bootstrap_slot(pctx, seed, 0, random.Random(0), k=2, pool=8)
    assert "reprompt" in info  # the campaign's setting reached the bootstrap
    child, info = reprompt_slot(pctx, seed, 0, random.Random(0), first, {**info}, rounds=1, scoring=3)
    rec = info["reprompt"]
    assert rec["score_after"] >= rec["score_before"] and len(rec["scoring"]) == 3
    train = {s.input for s in load_suite(suite, split="train", limit=200).samples}
    demos = slots_of(child)[0].demos
    assert demos and all(d["input"] in train and d["verbatim"] for d in demos)
    assert all("answer" in d["answer"].lower() for d in demos)  # the model's own worked answers
    assert not {d["input"] for d in demos} & {s.input for s in pctx.train_samples if s.id in rec["scoring"]}
