from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agentmeta.archive import Archive, ArchiveError, Candidate, SampleScore
from agentmeta.errors import AgentMetaError
from agentmeta.models.types import Usage


def test_add_get_round_trip_survives_reopen(tmp_path: Path, make) -> None:
    path = tmp_path / "a.db"
    cand = make(
        "CoT",
        kind="graph",
        model_specs={"agent": "smollm2", "proposer": "mock"},
        usage=Usage(calls=2, prompt_tokens=30, completion_tokens=7),
        metadata={"note": [1, 2, {"x": None}]},
    )
    with Archive(path) as a:
        cid = a.add(cand)
    assert len(cid) == 12
    with Archive(path) as b:
        got = b.get(cid)
    assert got.model_dump(exclude={"id"}) == cand.model_dump(exclude={"id"})
    assert got.created_at.tzinfo is not None


def test_add_is_idempotent_on_key_and_on_id(archive: Archive, make) -> None:
    a = archive.add(make("A", key="camp/g1/c0"))
    assert archive.add(make("A-again", key="camp/g1/c0")) == a
    b = archive.add(make("B", id="fixedid00001"))
    assert b == "fixedid00001"
    assert archive.add(make("B-again", id="fixedid00001")) == b
    assert len(archive) == 2
    assert archive.get(a).name == "A"  # the first write wins, nothing is overwritten


def test_parents_must_exist(archive: Archive, make) -> None:
    with pytest.raises(ArchiveError, match="not in the archive"):
        archive.add(make("orphan", parent_ids=["nope00000000"]))
    assert len(archive) == 0


def test_fitness_is_never_a_string() -> None:
    with pytest.raises(ValidationError, match="parse_adas_fitness"):
        Candidate(name="x", fitness="95% Bootstrap Confidence Interval: (1%, 2%), Median: 1.5%")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Candidate(name="x", fitness=float("nan"))


def test_get_unknown_and_prefix(archive: Archive, make) -> None:
    cid = archive.add(make("A"))
    assert archive.get(cid[:5]).id == cid
    assert cid in archive and "zzz" not in archive
    with pytest.raises(ArchiveError, match="no candidate"):
        archive.get("ffffffffffff" if not cid.startswith("f") else "000000000000")
    assert issubclass(ArchiveError, AgentMetaError)


def test_update_status(archive: Archive, make) -> None:
    cid = archive.add(make("A"))
    assert archive.get(cid).status == "pending"
    archive.update_status(cid, "error", "ZeroDivisionError: division by zero")
    got = archive.get(cid)
    assert (got.status, got.error) == ("error", "ZeroDivisionError: division by zero")
    assert got.updated_at > got.created_at
    with pytest.raises(ArchiveError, match="unknown status"):
        archive.update_status(cid, "great")
    with pytest.raises(ArchiveError, match="no candidate"):
        archive.update_status("000000000000", "ok")


def test_record_evaluation_computes_mean_replaces_and_counts_tokens(archive: Archive, make) -> None:
    cid = archive.add(make("A", usage=Usage(calls=1, prompt_tokens=100, completion_tokens=10)))
    scores = [
        {"sample_id": i, "score": float(i % 2), "error": "Timeout" if i == 3 else None} for i in range(4)
    ]
    ev = archive.record_evaluation(
        cid,
        "rg/arith",
        scores,
        stage="subset",
        ci_low=0.1,
        ci_high=0.9,
        usage=Usage(calls=4, prompt_tokens=40),
    )
    assert ev.mean == 0.5 and ev.n == 4
    c = archive.get(cid)
    assert (c.fitness, c.ci_low, c.ci_high, c.n, c.fitness_stage, c.status) == (
        0.5,
        0.1,
        0.9,
        4,
        "subset",
        "ok",
    )
    assert c.evaluations[0].scores[3] == SampleScore(sample_id="3", score=1.0, error="Timeout")
    assert c.usage.prompt_tokens == 140 and c.usage.calls == 5
    # same (suite, split, stage) replaces, and its tokens are not counted twice
    archive.record_evaluation(
        cid,
        "rg/arith",
        [{"sample_id": 0, "score": 1.0}],
        stage="subset",
        usage=Usage(calls=1, prompt_tokens=5),
    )
    c = archive.get(cid)
    assert len(c.evaluations) == 1 and c.fitness == 1.0 and c.ci_low is None
    assert c.usage.prompt_tokens == 105 and c.usage.calls == 2


def test_test_split_does_not_drive_fitness(archive: Archive, make) -> None:
    cid = archive.add(make("A"))
    archive.record_evaluation(cid, "s", [{"sample_id": "a", "score": 0.25}])
    archive.record_evaluation(cid, "s", [{"sample_id": "b", "score": 1.0}], split="test")
    assert archive.get(cid).fitness == 0.25
    assert archive.leaderboard("s")[0].fitness == 0.25
    assert archive.leaderboard("s", split="test")[0].fitness == 1.0


def test_is_evaluated_for_resume(archive: Archive, make) -> None:
    cid = archive.add(make("A"))
    assert not archive.is_evaluated(cid, "s", "validation", "subset")
    archive.record_evaluation(cid, "s", [{"sample_id": "a", "score": 1}], stage="subset")
    assert archive.is_evaluated(cid, "s", "validation", "subset")
    assert not archive.is_evaluated(cid, "s", "validation", "full")
    assert not archive.is_evaluated(cid, "other", "validation", "subset")
    assert archive.get_evaluation(cid, "s", stage="subset").mean == 1.0  # type: ignore[union-attr]
    with pytest.raises(ArchiveError, match="no candidate"):
        archive.record_evaluation("000000000000", "s", [{"sample_id": "a", "score": 1}])


def test_leaderboard_orders_by_fitness_then_ci_low(archive: Archive, make) -> None:
    ids = {}
    for name, fit, lo in [
        ("mid", 0.5, 0.3),
        ("top", 0.8, 0.6),
        ("tie-wide", 0.5, 0.1),
        ("tie-tight", 0.5, 0.45),
    ]:
        ids[name] = archive.add(make(name, fitness=fit, ci_low=lo, ci_high=fit + 0.1, status="ok"))
    archive.add(make("unscored"))
    board = archive.leaderboard()
    assert [e.name for e in board] == ["top", "tie-tight", "mid", "tie-wide"]
    assert [e.rank for e in board] == [1, 2, 3, 4]
    assert [e.name for e in archive.leaderboard(limit=2)] == ["top", "tie-tight"]
    assert archive.leaderboard(include_unscored=True)[-1].name == "unscored"


def test_leaderboard_per_suite_and_campaign(archive: Archive, make) -> None:
    camp = archive.start_campaign("run-1", {"suite": "s1"})
    a = archive.add(make("a", campaign=camp.id))
    b = archive.add(make("b", campaign=camp.id))
    c = archive.add(make("c"))
    archive.record_evaluation(a, "s1", [{"sample_id": "x", "score": 0.2}] * 2)
    archive.record_evaluation(a, "s2", [{"sample_id": "x", "score": 0.9}] * 2)
    # the evaluation with more samples speaks for the candidate
    archive.record_evaluation(b, "s1", [{"sample_id": "x", "score": 1.0}], stage="subset")
    archive.record_evaluation(b, "s1", [{"sample_id": str(i), "score": 0.1} for i in range(10)], stage="full")
    archive.record_evaluation(c, "s1", [{"sample_id": "x", "score": 0.5}] * 2)
    assert [e.name for e in archive.leaderboard("s1")] == ["c", "a", "b"]
    assert [(e.name, e.fitness) for e in archive.leaderboard("s2")] == [("a", 0.9)]
    assert [e.name for e in archive.leaderboard("s1", campaign="run-1")] == ["a", "b"]
    assert [e.name for e in archive.leaderboard("s1", campaign=camp.id)] == ["a", "b"]
    assert [e.name for e in archive.leaderboard(campaign="run-1")] == ["a", "b"]


def test_lineage_and_children(archive: Archive, make) -> None:
    root = archive.add(make("root"))
    other = archive.add(make("other"))
    mid = archive.add(make("mid", parent_ids=[root], generation=1))
    leaf = archive.add(make("leaf", parent_ids=[mid, other], generation=2))
    sib = archive.add(make("sib", parent_ids=[root], generation=1))
    lin = archive.lineage(leaf)
    assert [c.name for c in lin.ancestors] == ["mid", "other", "root"]
    assert lin.depth == {mid: 1, other: 1, root: 2}
    assert lin.children == []
    assert [c.name for c in archive.lineage(root).children] == ["mid", "sib"]
    assert archive.lineage(root).ancestors == []
    assert archive.children_count(root) == 2 and archive.children_count(leaf) == 0
    assert archive.children_counts() == {root: 2, other: 1, mid: 1, leaf: 0, sib: 0}


def test_iteration_and_filters(archive: Archive, make) -> None:
    archive.start_campaign("c1")
    a = archive.add(make("a", campaign="c1", kind="prompt"))
    b = archive.add(make("b", campaign="c1"))
    c = archive.add(make("c", generation=3))
    archive.update_status(b, "invalid", "SyntaxError")
    assert [x.id for x in archive] == [a, b, c]
    assert [x.id for x in archive.candidates(campaign="c1")] == [a, b]
    assert [x.id for x in archive.candidates(status="invalid")] == [b]
    assert [x.id for x in archive.candidates(status=["pending", "invalid"], kind="code")] == [b, c]
    assert [x.id for x in archive.candidates(generation=3)] == [c]
    with pytest.raises(ArchiveError, match="unknown kind"):
        archive.candidates(kind="agent")


def test_campaign_resume_and_config_guard(archive: Archive) -> None:
    cfg = {"suite": "rg/arith", "strategy": "meta-agent", "seeds": [0, 1], "budgets": {"iterations": 30}}
    first = archive.start_campaign("mgsm", cfg)
    again = archive.start_campaign("mgsm", {**cfg, "seeds": (0, 1)})
    assert again.id == first.id
    with pytest.raises(ArchiveError, match="another config.*budgets"):
        archive.start_campaign("mgsm", {**cfg, "budgets": {"iterations": 31}})
    updated = archive.update_campaign("mgsm", status="done", state={"iteration": 7})
    assert (updated.status, updated.state) == ("done", {"iteration": 7})
    assert archive.update_campaign(first.id, state={"spent": 3}).state == {"iteration": 7, "spent": 3}
    assert [c.name for c in archive.campaigns()] == ["mgsm"]
    with pytest.raises(ArchiveError, match="no campaign"):
        archive.get_campaign("nope")


def test_summary_for_prompt_is_compact_and_ranked(archive: Archive, make) -> None:
    low = archive.add(make("Low", thought="x " * 500))
    high = archive.add(make("High"))
    bad = archive.add(make("Broken"))
    archive.record_evaluation(low, "s", [{"sample_id": "1", "score": 0.0}], ci_low=0.0, ci_high=0.2)
    archive.record_evaluation(high, "s", [{"sample_id": "1", "score": 1.0}] * 4, ci_low=0.75, ci_high=1.0)
    archive.update_status(bad, "error", "NameError: foo")
    text = archive.summary_for_prompt(max_thought_chars=80)
    lines = text.splitlines()
    assert lines[0].startswith("[1] High") and "fitness 1.000, 95% CI [0.750, 1.000], n=4" in lines[0]
    assert any(line.startswith("[2] Low") for line in lines)
    assert "Broken" not in text and "def forward" not in text
    assert max(len(line) for line in lines) < 120
    with_src = archive.summary_for_prompt(include_source=True, include_failed=5, order="generation")
    assert "def forward" in with_src and "NameError: foo" in with_src
    assert archive.summary_for_prompt(limit=1).count("[") == 2  # one entry: "[1]" and its CI bracket


def test_ids_are_short_and_safe(archive: Archive, make) -> None:
    with pytest.raises(ValidationError):
        make("x", id="../../etc/passwd")
    with pytest.raises(ValidationError):
        make("x", id="a" * 33)
    assert len(archive.add(make("x"))) == 12
