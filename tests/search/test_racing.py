"""Racing: a promoted candidate is dropped at a rung once its paired interval against the incumbent
lies below 0; it keeps what it was scored on, and a resumed campaign evaluates nothing again."""

from __future__ import annotations

import re

import pytest

from agentmeta import get_model
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from tests.search.scripted import Scripted, write_suite

PLAN = [
    ("A-meticulous", "meticulous", 0, ["seed"]),  # right everywhere: the incumbent
    ("B-lazy", "lazy", 0, ["seed"]),  # right on the two subset rows only
    ("C-meticulous", "meticulous", 2, ["seed"]),  # as good as A: raced through to the full stage
]


def reply(req) -> str:
    text = " ".join(m.content for m in req.messages)
    a, b = map(int, re.findall(r"What is (\d+) \+ (\d+)", text)[-1])
    good = "meticulous" in text or ("lazy" in text and (a, b) in ((1, 2), (2, 2)))
    return f"Answer: {a + b if good else a + b + 1}"


def _run(tmp_path, iterations: int, race: list[int], db: str = "a.db"):
    archive = Archive(tmp_path / db)
    suite = write_suite(tmp_path / "s.jsonl")
    config = SearchConfig(suite=suite, kind="prompt", iterations=iterations, subset=2, full=8, race=race,
                          confirm=False)  # fmt: skip
    events: list[dict] = []
    camp = Campaign(config, archive, model=get_model("mock", outputs=reply), meta_model=get_model("mock"),
                    strategy=Scripted(PLAN), progress=events.append)  # fmt: skip
    result = camp.run()
    by_name = {c.name: c for c in archive.candidates(campaign=camp.record.id)}
    return archive, camp, result, by_name, events


def test_a_candidate_worse_than_the_incumbent_is_dropped_at_a_rung(tmp_path):
    archive, camp, result, by_name, events = _run(tmp_path, 3, race=[6])
    suite = camp.config.suite
    lazy, good = by_name["B-lazy"], by_name["C-meticulous"]
    assert archive.get_evaluation(lazy.id, suite, "validation", "subset").mean == 1.0  # promoted...
    rung = archive.get_evaluation(lazy.id, suite, "validation", "race-6")
    assert rung is not None and len(rung.scores) == 6 and rung.mean == 2 / 6  # ...kept what it was scored on
    assert (
        archive.get_evaluation(lazy.id, suite, "validation", "full") is None
    )  # ...and cost 6 samples, not 8
    assert (
        lazy.metadata["race"]["dropped_at"] == 6 and lazy.metadata["race"]["vs"] == by_name["A-meticulous"].id
    )
    assert lazy.metadata["race"]["high"] < 0 and lazy.fitness_stage == "subset"
    assert any(e["event"] == "dropped" and e["id"] == lazy.id for e in events)
    full = archive.get_evaluation(good.id, suite, "validation", "full")
    assert full is not None and full.mean == 1.0 and "race" not in good.metadata  # not dropped
    # the rung's records were reused by the full stage: 6 + 2 samples, not 6 + 8
    assert len(archive.get_evaluation(good.id, suite, "validation", "race-6").scores) == 6
    # resumed: the dropped candidate is decided again from the archive, nothing is evaluated twice
    _, _, again, _, _ = _run(tmp_path, 3, race=[6])
    assert again.evaluated == []


def test_without_rungs_the_same_candidate_gets_the_full_stage(tmp_path):
    archive, camp, _, by_name, _ = _run(tmp_path, 2, race=[], db="b.db")
    full = archive.get_evaluation(by_name["B-lazy"].id, camp.config.suite, "validation", "full")
    assert full is not None and full.mean == 2 / 8


def test_settings_added_later_leave_the_identity_of_older_campaigns_alone():
    """A campaign stored before `race` and `models` existed has neither in its identity: it resumes."""
    plain = SearchConfig(suite="s.jsonl", kind="graph", strategy="random")
    assert "race" not in plain.identity() and "models" not in plain.identity()
    raced = SearchConfig(suite="s.jsonl", kind="graph", strategy="random", race=[16], models=["mock"])
    assert raced.identity()["race"] == [16] and raced.identity()["models"] == ["mock"]


@pytest.mark.embedded
def test_racing_on_the_embedded_model_keeps_each_rung_evaluation(embedded, tmp_path):
    """Every promoted candidate is scored on the first 4 full-stage samples first (stage `race-4`),
    then goes on to the full stage or is dropped there with the reason; nothing is lost."""
    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    archive = Archive(tmp_path / "r.db")
    config = SearchConfig(suite=suite, kind="graph", strategy="random", seeds=["cot"], iterations=2, subset=2,
                          full=8, race=[4], promote_margin=1.0, confirm=False, concurrency=8)  # fmt: skip
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    camp.run()
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0 and c.status == "ok"]
    assert children
    for c in children:
        rung = archive.get_evaluation(c.id, suite, "validation", "race-4")
        full = archive.get_evaluation(c.id, suite, "validation", "full")
        assert rung is not None and rung.n == 4 and rung.n_infra == 0
        if full is None:  # dropped at the rung: the reason is kept
            assert c.metadata["race"]["dropped_at"] == 4
        else:  # the rung's samples are reused, not run again
            assert full.n == 8 and full.score_by_id().keys() >= rung.score_by_id().keys()
