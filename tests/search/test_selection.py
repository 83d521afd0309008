"""Honest selection in a campaign: full-stage scores rank first, promotion is paired with the parent,
tokens per sample are recorded and shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentmeta.models.types import Usage
from tests.search.scripted import PLAN, run_scripted, write_suite


@pytest.fixture
def split_suite(tmp_path: Path) -> str:
    return write_suite(tmp_path / "splits.jsonl")


def test_promotion_is_paired_with_the_parent_on_the_same_subset_samples(tmp_path, split_suite):
    archive, camp, result, by_name, events = run_scripted(tmp_path, split_suite, confirm=False)
    seed = next(c for c in by_name.values() if c.generation == 0)
    assert seed.fitness == 0.0 and seed.fitness_stage == "full"
    a, b, c, d = (by_name[p[0]] for p in PLAN)
    assert a.fitness_stage == "full" and a.fitness == 1.0
    # B: half right on the subset, far below the best subset score (A's 1.0) but no worse than its
    # parent on the same samples: the old rule would have left it on the subset
    assert not camp.promising(0.5, 1.0)
    assert b.fitness_stage == "full" and b.n == 8 and b.fitness == 0.5
    assert b.metadata["promotion"] == {
        "promote": True, "basis": "parent", "mean": 0.5, "parent": seed.id, "parent_mean": 0.0, "n": 4,
        "best_subset": 1.0,
    }  # fmt: skip
    # C: the same 0.5, but its parent A scored 1.0 on those samples: not promoted
    assert c.fitness_stage == "subset" and c.metadata["promotion"]["basis"] == "parent"
    assert c.metadata["promotion"]["parent"] == a.id and not c.metadata["promotion"]["promote"]
    ev = next(e for e in events if e["event"] == "not_promoted")
    assert ev["id"] == c.id and ev["parent_mean"] == 1.0 and ev["mean"] == 0.5
    # D has no parent: the fallback rule (within the margin of the best subset score so far)
    assert d.metadata["promotion"]["basis"] == "best" and d.fitness_stage == "full"
    # the paired means are over the samples both scored: the subset evaluations share their ids
    ids = [s.sample_id for s in archive.get_evaluation(c.id, split_suite, stage="subset").scores]
    assert ids == [s.sample_id for s in archive.get_evaluation(a.id, split_suite, stage="subset").scores]


def test_subset_only_candidate_never_outranks_a_full_stage_one(tmp_path, split_suite):
    archive, camp, result, by_name, _ = run_scripted(tmp_path, split_suite, confirm=False)
    c, seed = by_name["C-halfway"], next(x for x in by_name.values() if x.generation == 0)
    assert c.fitness == 0.5 > seed.fitness == 0.0  # a higher score, on the subset stage only
    for board in (archive.leaderboard(campaign=camp.record.id), archive.leaderboard(split_suite)):
        names = [e.name for e in board]
        assert names.index(c.name) > names.index(seed.name)
        full = [e.subset_only for e in board]
        assert full == sorted(full)  # every full-stage entry before every subset-only one
        entry = board[names.index(c.name)]
        assert entry.subset_only and entry.stage == "subset"
    assert result.best.name == "A-meticulous" and result.best.stage == "full"
    assert camp.best().id == by_name["A-meticulous"].id
    text = archive.summary_for_prompt(campaign=camp.record.id)
    assert "C-halfway" in text and "(subset stage only)" in text


def test_tokens_per_sample_are_recorded_per_stage_and_shown(tmp_path, split_suite):
    from typer.testing import CliRunner

    from agentmeta.cli import app

    archive, camp, _, by_name, _ = run_scripted(tmp_path, split_suite, confirm=False)
    for cand in by_name.values():
        evs = archive.evaluations(cand.id)
        assert evs
        for ev in evs:
            # one call per sample; the mock's reply "Answer: N" is 2 completion tokens
            assert ev.completion_tokens_per_sample == 2.0
            total = ev.usage.prompt_tokens + ev.usage.completion_tokens
            assert ev.tokens_per_sample == total / len(ev.scores) > 2.0
            assert ev.model_dump(mode="json")["tokens_per_sample"] == ev.tokens_per_sample
    # longer prompts cost more per sample
    full = {
        n: archive.get_evaluation(c.id, split_suite) for n, c in by_name.items() if c.fitness_stage == "full"
    }
    assert full["D-meticulous"].tokens_per_sample > full["A-meticulous"].tokens_per_sample
    board = {e.name: e for e in archive.leaderboard(campaign=camp.record.id)}
    for name, ev in full.items():
        assert board[name].tokens_per_sample == ev.tokens_per_sample
        assert board[name].completion_tokens_per_sample == 2.0
    sub = archive.get_evaluation(by_name["C-halfway"].id, split_suite, stage="subset")
    assert board["C-halfway"].tokens_per_sample == sub.tokens_per_sample
    res = CliRunner().invoke(
        app, ["archive", "ls", "--archive", str(tmp_path / "a.db")], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    assert "tok/sample" in res.output and "subset only" in res.output
    line = next(x for x in res.output.splitlines() if "A-meticulous" in x)
    assert f"{board['A-meticulous'].tokens_per_sample:.0f}" in line.split()
    assert res.output.index("A-meticulous") < res.output.index("C-halfway")
    rows = json.loads(
        CliRunner().invoke(app, ["archive", "ls", "--archive", str(tmp_path / "a.db"), "--json"]).stdout
    )
    assert {r["name"]: r["tokens_per_sample"] for r in rows}["A-meticulous"] == board[
        "A-meticulous"
    ].tokens_per_sample


def test_tokens_per_sample_of_an_evaluation_without_samples_is_none():
    from agentmeta.archive.records import Evaluation

    ev = Evaluation(candidate_id="x", suite="s", scores=[{"sample_id": "a", "score": 1.0}] * 2, usage=Usage())
    assert ev.tokens_per_sample == 0.0 and ev.completion_tokens_per_sample == 0.0
    assert Evaluation(candidate_id="x", suite="s").tokens_per_sample is None
