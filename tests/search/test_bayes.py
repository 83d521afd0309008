"""The `bayes` strategy: TPE over a declared design space, fed by subset scores, rebuilt from the archive."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentmeta import get_model
from agentmeta.agents.graph import parse_spec
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.bayes import BASE_PARAMS, BayesSearch, describe
from agentmeta.search.operators import canonical

pytest.importorskip("optuna")


def _suite(tmp_path: Path) -> str:
    rows = []
    for i in range(40):
        a, b = i % 7 + 1, i % 5 + 2
        split = "train" if i < 12 else "validation" if i < 28 else "test"
        rows.append({"input": f"What is {a} + {b}?", "target": str(a + b), "split": split})
    path = tmp_path / "adds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"{path}?scorer=numeric"


def _task(req) -> str:
    """Right on odd first numbers, and on all when shown at least two demonstrations or told to
    double-check; else off by one."""
    text = " ".join(m.content for m in req.messages)
    a, b = map(int, re.findall(r"What is (\d+) \+ (\d+)", text)[-1])
    demos = sum(m.role == "assistant" for m in req.messages)
    good = demos >= 2 or "double-check" in text or a % 2 == 1
    return f"Working.\nAnswer: {a + b if good else a + b + 1}"


def _campaign(tmp_path: Path, db: str = "a.db", iterations: int = 6, seed: int = 0, **kw):
    archive = Archive(tmp_path / db)
    kw.setdefault("strategy", "bayes")
    config = SearchConfig(suite=_suite(tmp_path), kind="graph", seeds=["cot"], seed=seed,
                          iterations=iterations, subset=4, full=8, confirm=False, **kw)  # fmt: skip
    task = get_model("mock", outputs=_task)
    camp = Campaign(config, archive, model=task, meta_model=get_model("mock"))
    result = camp.run()
    return archive, camp, result, task


def _shape(archive: Archive, camp: Campaign) -> list[tuple[str, dict]]:
    return [
        (canonical(parse_spec(c.source)), c.metadata.get("params"))
        for c in archive.candidates(campaign=camp.record.id)
        if c.generation > 0
    ]


def test_bayes_proposes_distinct_points_of_the_space_from_the_best_seed(tmp_path):
    archive, camp, result, task = _campaign(tmp_path, iterations=8)
    cands = archive.candidates(campaign=camp.record.id)
    seed = next(c for c in cands if c.generation == 0)
    children = [c for c in cands if c.generation > 0]
    assert len(children) == 8 and all(c.status == "ok" for c in children)
    assert all(c.parent_ids == [seed.id] and c.metadata["params"] != BASE_PARAMS for c in children)
    assert all(c.name.startswith("bayes (") and describe(c.metadata["params"]) in c.name for c in children)
    keys = [canonical(parse_spec(c.source)) for c in cands]
    assert len(set(keys)) == len(keys)  # no graph evaluated twice
    # demonstrations come from the train split only, sent as chat turns
    train = {f"What is {i % 7 + 1} + {i % 5 + 2}?" for i in range(12)}
    shown = [d.input for c in children for n in parse_spec(c.source).nodes for d in n.demos]
    assert shown and all(x in train for x in shown)
    # the search finds what the task rewards: some child beats the seed on the subset
    subset = {
        c.id: archive.get_evaluation(c.id, camp.config.suite, "validation", "subset").mean for c in cands
    }
    assert max(subset[c.id] for c in children) > subset[seed.id]


def test_bayes_is_seeded_and_resumes_from_the_archive_without_evaluating_twice(tmp_path):
    archive, camp, _, _ = _campaign(tmp_path, db="a.db", iterations=6)
    straight = _shape(archive, camp)
    again_archive, again_camp, _, _ = _campaign(tmp_path, db="b.db", iterations=6)
    assert _shape(again_archive, again_camp) == straight  # same seed, same proposals
    # three iterations, then the same campaign extended to six: the study is rebuilt from the archive
    part_archive, part_camp, first, _ = _campaign(tmp_path, db="c.db", iterations=3)
    _, _, resumed, task = _campaign(tmp_path, db="c.db", iterations=6)
    assert _shape(part_archive, part_camp) == straight
    assert not set(first.evaluated) & set(resumed.evaluated)  # nothing evaluated twice
    assert len(resumed.new_candidates) == 3
    other_archive, other_camp, _, _ = _campaign(tmp_path, db="d.db", iterations=6, seed=1)
    assert _shape(other_archive, other_camp) != straight


def test_the_study_holds_the_seed_and_every_trial_with_its_subset_score(tmp_path):
    archive, camp, _, _ = _campaign(tmp_path, iterations=3)
    from agentmeta.search.strategy import ProposalContext

    ctx = ProposalContext(archive=archive, campaign=camp.record.id, kind="graph", task_description="",
                          iteration=3, seed=0, meta_model=get_model("mock"),
                          candidates=archive.candidates(campaign=camp.record.id), suite=camp.config.suite)  # fmt: skip
    strategy = BayesSearch()
    base, _, _ = strategy._base(ctx)
    study, space = strategy._study(ctx, base)
    assert len(study.trials) == 4 and study.trials[0].params == BASE_PARAMS
    values = {json.dumps(t.params, sort_keys=True): t.value for t in study.trials}
    for c in ctx.candidates:
        if c.generation > 0:
            ev = archive.get_evaluation(c.id, camp.config.suite, "validation", "subset")
            assert values[json.dumps(c.metadata["params"], sort_keys=True)] == ev.mean


def test_bayes_refuses_other_kinds(tmp_path):
    from agentmeta.errors import ConfigError
    from agentmeta.search.strategies import get_strategy

    with pytest.raises(ConfigError, match="needs a kind with slots.*--kind code has none"):
        get_strategy("bayes", SearchConfig(suite="x.jsonl", kind="code", strategy="bayes"))


@pytest.mark.embedded
def test_a_bayes_campaign_runs_on_the_embedded_model(embedded, tmp_path):
    """Two TPE trials on the real model: each a valid graph of the design space, built, evaluated on
    the subset and archived with its parameters; demonstrations, when drawn, from train samples."""
    from agentmeta.eval import load_suite

    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    archive = Archive(tmp_path / "e.db")
    config = SearchConfig(suite=suite, kind="graph", strategy="bayes", seeds=["cot"], iterations=2, subset=2,
                          full=4, confirm=False, concurrency=8)  # fmt: skip
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    result = camp.run()
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    assert len(children) == 2 and all(c.status == "ok" and c.metadata.get("params") for c in children)
    for c in children:
        ev = archive.get_evaluation(c.id, suite, "validation", "subset")
        assert ev is not None and ev.n == 2 and ev.n_infra == 0
    train = {s.input for s in load_suite(suite, split="train", limit=200).samples}
    shown = [d.input for c in children for n in parse_spec(c.source).nodes for d in n.demos]
    assert all(x in train for x in shown)
    assert result.tokens > 0


def test_votes_enter_the_space_only_when_asked_for():
    from agentmeta.agents.graph import GraphSpec
    from agentmeta.search.bayes import _space, _with_votes

    assert _space(3)["votes"].choices == (0,) and _space(3, votes=True)["votes"].choices == (0, 1, 2)
    graph = GraphSpec.model_validate(
        {"name": "g", "nodes": [{"id": "cot", "type": "llm", "prompt": "{input}"}]}
    )
    voted = _with_votes(graph, 0, 5)
    assert [n.type for n in voted.nodes] == ["sample", "vote"] and voted.nodes[0].n == 5


def test_the_campaigns_other_models_enter_the_space(tmp_path):
    other = "mock/tests.agents.cascade_models:strong"
    archive, camp, _, _ = _campaign(tmp_path, iterations=8, models=[other])
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    moved = [c for c in children if c.metadata["params"]["model"] == 1]
    assert moved and all(f"model {other}" in c.name for c in moved)
    assert all(any(n.model == other for n in parse_spec(c.source).nodes) for c in moved)
    assert all(c.status == "ok" for c in children)


def test_adaptive_compute_enters_the_space_only_when_asked_for(tmp_path):
    from agentmeta.search.bayes import _space

    assert "compute" not in _space(3) and _space(3, adaptive=True)["compute"].choices == (0, 1, 2)
    archive, camp, _, _ = _campaign(tmp_path, iterations=10, adaptive=True)
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    types = {c.metadata["params"].get("compute", 0): [n.type for n in parse_spec(c.source).nodes] for c in children}
    assert types.get(1) == ["tree_search"] and types.get(2) == ["bandit"], types
    bandit = next(parse_spec(c.source).nodes[0] for c in children if c.metadata["params"].get("compute") == 2)
    assert sum(p for _, p in bandit.stats.values()) == 12  # learned on the 12 train samples, then frozen
    assert all(c.status == "ok" for c in children)
