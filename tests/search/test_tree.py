"""The `tree` strategy: AB-MCTS over the campaign's candidates, replayed from the archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmeta.agents.graph import parse_spec
from agentmeta.search.operators import canonical
from tests.search.test_bayes import _campaign as _bayes_campaign
from tests.search.test_bayes import _suite  # noqa: F401 - the same suite and task model

pytest.importorskip("treequest")


def _campaign(tmp_path: Path, db: str = "a.db", iterations: int = 6, seed: int = 0):
    return _bayes_campaign(tmp_path, db=db, iterations=iterations, seed=seed, strategy="tree")


def _shape(archive, camp):
    return [
        (
            canonical(parse_spec(c.source)),
            {k: v for k, v in c.metadata["params"].items() if k != "expanded"},
            c.parent_ids,
        )  # fmt: skip
        for c in archive.candidates(campaign=camp.record.id)
        if c.generation > 0 and c.source
    ]


def test_tree_grows_wider_and_deeper_from_the_best_seed(tmp_path):
    archive, camp, result, _ = _campaign(tmp_path, iterations=8, seed=2)
    cands = archive.candidates(campaign=camp.record.id)
    root = next(c for c in cands if c.generation == 0)
    children = [c for c in cands if c.generation > 0]
    assert len(children) == 8 and all(c.status == "ok" for c in children)
    ids = {c.id for c in cands}
    assert all(len(c.parent_ids) == 1 and c.parent_ids[0] in ids for c in children)
    assert all(c.thought.startswith("tree: ") and c.metadata["params"]["action"] in ("mutate", "refine")
               for c in children)  # fmt: skip
    keys = [canonical(parse_spec(c.source)) for c in cands]
    assert len(set(keys)) == len(keys)  # no graph evaluated twice
    assert any(c.parent_ids == [root.id] for c in children)  # wider
    assert any(c.parent_ids != [root.id] and c.thought.startswith("tree: deeper") for c in children)  # deeper
    # refinements show failed *train* samples only
    train = {f"What is {i % 7 + 1} + {i % 5 + 2}?" for i in range(12)}
    shown = [d.input for c in children for n in parse_spec(c.source).nodes for d in n.demos]
    assert all(x in train for x in shown)


def test_tree_is_seeded_and_resumes_the_same_tree_from_the_archive(tmp_path):
    archive, camp, _, _ = _campaign(tmp_path, db="a.db", iterations=6)
    straight = _shape(archive, camp)
    part_archive, part_camp, first, _ = _campaign(tmp_path, db="c.db", iterations=3)
    _, _, resumed, _ = _campaign(tmp_path, db="c.db", iterations=6)

    def by_position(shape, cands):
        index = {c.id: i for i, c in enumerate(cands)}
        return [(k, p, [index[x] for x in parents]) for k, p, parents in shape]

    a = by_position(straight, archive.candidates(campaign=camp.record.id))
    b = by_position(_shape(part_archive, part_camp), part_archive.candidates(campaign=part_camp.record.id))
    assert a == b  # the resumed tree is the one a straight run grows
    assert not set(first.evaluated) & set(resumed.evaluated)
    other_archive, other_camp, _, _ = _campaign(tmp_path, db="d.db", iterations=6, seed=1)
    c = by_position(
        _shape(other_archive, other_camp), other_archive.candidates(campaign=other_camp.record.id)
    )
    assert c != a


@pytest.mark.embedded
def test_a_tree_campaign_runs_on_the_embedded_model(embedded, tmp_path):
    """Two AB-MCTS expansions on the real model, each a valid graph evaluated on the subset."""
    from agentmeta.archive import Archive
    from agentmeta.search import Campaign, SearchConfig

    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    archive = Archive(tmp_path / "e.db")
    config = SearchConfig(suite=suite, kind="graph", strategy="tree", seeds=["cot"], iterations=2, subset=2,
                          full=4, confirm=False, concurrency=8)  # fmt: skip
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    camp.run()
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    assert len(children) == 2 and all(c.status == "ok" and c.thought.startswith("tree: ") for c in children)
    for c in children:
        ev = archive.get_evaluation(c.id, suite, "validation", "subset")
        assert ev is not None and ev.n == 2 and ev.n_infra == 0
