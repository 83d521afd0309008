"""`SearchConfig.parallel`: a round's candidates are proposed in order, then evaluated together (the
engine batches their samples); promotion never depends on which sibling finished first, a seeded
campaign replays, and a resumed one evaluates nothing twice."""

from __future__ import annotations

import re

import pytest

from agentmeta import get_model
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from tests.search.conftest import task_reply, write_suite


def _run(folder, *, parallel: int, iterations: int = 6, db: str = "a.db", concurrency: int = 2):
    folder.mkdir(exist_ok=True)
    suite = write_suite(folder)
    archive = Archive(folder / db)
    config = SearchConfig(
        suite=suite, kind="graph", strategy="random", seeds=["cot"], iterations=iterations, subset=2, full=6,
        concurrency=concurrency, parallel=parallel, confirm=False, seed=4,
    )  # fmt: skip
    model = get_model("mock", outputs=task_reply, cache=False, batching=True, delay_s=0.02)
    camp = Campaign(config, archive, model=model, meta_model=get_model("mock", cache=False))
    result = camp.run()
    cands = sorted(archive.candidates(campaign=camp.record.id), key=lambda c: c.created_at)
    return camp, result, cands, model


def _scores(archive, cands, suite):
    out = []
    for c in cands:
        ev = archive.get_evaluation(c.id, suite, "validation", "subset")
        source = re.sub(r"\[[0-9a-f]{12}\]", "[id]", c.source)  # a parent's id differs per archive
        out.append((c.name, source, c.status, None if ev is None else ev.mean))
    return out


def test_a_round_is_evaluated_together_and_batched_by_the_engine(tmp_path):
    camp, result, cands, model = _run(tmp_path / "p", parallel=3)
    new = [c for c in cands if c.generation > 0]
    assert len(new) == 6 and result.stop_reason == "iterations done"
    assert all(c.status == "ok" for c in new)
    # two candidates' samples (2 at a time each) met in one batch: more than one evaluation's concurrency
    assert max(model._batcher.batch_sizes) > 2
    assert camp.pending == set()
    _, _, _, alone = _run(tmp_path / "s", parallel=1)
    assert max(alone._batcher.batch_sizes) <= 2  # one candidate at a time never fills more


def test_a_parallel_campaign_replays_exactly(tmp_path):
    a, _, ca, _ = _run(tmp_path / "a", parallel=3)
    b, _, cb, _ = _run(tmp_path / "b", parallel=3)
    sa, sb = _scores(a.archive, ca, a.config.suite), _scores(b.archive, cb, b.config.suite)
    assert len(sa) == 7 and sa == sb  # the seed and six candidates: the same designs, the same scores
    assert [c.fitness_stage for c in ca] == [c.fitness_stage for c in cb]


def test_a_resumed_parallel_campaign_evaluates_nothing_twice(tmp_path):
    camp, first, cands, _ = _run(tmp_path, parallel=3, iterations=3)
    assert len([c for c in cands if c.generation > 0]) == 3
    again, second, cands2, _ = _run(tmp_path, parallel=3, iterations=6)
    assert again.record.id == camp.record.id
    before = {c.id for c in cands}
    assert not [e for e in second.evaluated if e.split(":", 1)[1] in before]
    assert len([c for c in cands2 if c.generation > 0]) == 6


def test_parallel_is_part_of_the_identity_only_when_set():
    base = SearchConfig(suite="s.jsonl")
    assert "parallel" not in base.identity()
    assert SearchConfig(suite="s.jsonl", parallel=4).identity()["parallel"] == 4
    with pytest.raises(ValueError):
        SearchConfig(suite="s.jsonl", parallel=0)


def test_a_pending_sibling_is_never_the_incumbent_nor_the_best_subset(tmp_path):
    camp, _, cands, _ = _run(tmp_path, parallel=3, iterations=3)
    best = camp.best()
    assert best is not None
    camp.pending = {best.id}
    assert camp.best() is None or camp.best().id != best.id
    subset = {c.id: camp._best_subset(exclude="") for c in cands}
    camp.pending = {c.id for c in cands}
    assert camp._best_subset(exclude="") is None and camp.best() is None
    camp.pending = set()
    assert camp.best().id == best.id and camp._best_subset(exclude="") == max(subset.values())


@pytest.mark.embedded
def test_a_round_of_bayes_trials_runs_together_on_the_embedded_model(embedded, tmp_path):
    """Two TPE trials proposed in one round (the second sees the first as pending) and evaluated
    together on the real model: two different designs, each scored on the subset."""
    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    archive = Archive(tmp_path / "e.db")
    config = SearchConfig(suite=suite, kind="graph", strategy="bayes", seeds=["cot"], iterations=2, subset=2,
                          full=4, confirm=False, concurrency=4, parallel=2)  # fmt: skip
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    camp.run()
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    assert len(children) == 2 and all(c.status == "ok" for c in children)
    assert children[0].metadata["params"] != children[1].metadata["params"]
    for c in children:
        ev = archive.get_evaluation(c.id, suite, "validation", "subset")
        assert ev is not None and ev.n == 2 and ev.n_infra == 0
