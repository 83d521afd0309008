"""Per-sample answers and outcomes in the archive, old-format entries, incomplete evaluations."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from agentmeta.archive import Archive, SampleScore
from agentmeta.archive.records import ANSWER_MAX_BYTES, FITNESS_INFRA_KEY, truncate_answer
from agentmeta.eval.types import EvalResult, SampleRecord
from agentmeta.models.types import Usage

SECRET = "TARGET-7c1f"  # a target: must never reach the archive


def _result(records: list[SampleRecord], *, incomplete: bool = False, suite: str = "rg/arith") -> EvalResult:
    counted = [r for r in records if r.outcome != "infra_error"]
    mean = sum(r.score for r in counted) / len(counted) if counted else 0.0
    return EvalResult(
        suite=suite,
        split="validation",
        agent="a",
        model="mock",
        records=records,
        mean=mean,
        ci_low=max(0.0, mean - 0.2),
        ci_high=min(1.0, mean + 0.2),
        n=len(counted),
        n_hits=sum(r.score >= 1 for r in counted),
        n_errors=sum(r.outcome == "agent_error" for r in records),
        n_infra=len(records) - len(counted),
        incomplete=incomplete,
        usage=Usage(calls=len(records), prompt_tokens=10),
        wall_s=0.5,
    )


def _rec(sid: str, score: float, answer: str | None = "42", **kw: object) -> SampleRecord:
    fields: dict[str, object] = {"target": SECRET, "explanation": f"expected {SECRET}", **kw}
    return SampleRecord(id=sid, answer=answer, score=score, **fields)


def test_truncate_answer_keeps_4kb_with_a_marker() -> None:
    assert truncate_answer("short") == "short"
    exact = "x" * ANSWER_MAX_BYTES
    assert truncate_answer(exact) == exact
    for text in ("y" * 10_000, "é" * 5_000, "猫" * 3_000):
        cut = truncate_answer(text)
        assert len(cut.encode("utf-8")) <= ANSWER_MAX_BYTES
        assert cut.startswith(text[:100]) and cut.endswith(f"[... truncated: {len(text)} characters in all]")
        assert truncate_answer(cut) == cut  # idempotent: re-reading a stored answer changes nothing
    assert SampleScore(sample_id="a", score=1, answer="z" * 9000).answer == truncate_answer("z" * 9000)


def test_record_result_keeps_answers_outcomes_attempts_not_targets(tmp_path: Path, make) -> None:
    path = tmp_path / "a.db"
    records = [
        _rec("s1", 1.0, "42"),
        _rec("s2", 0.0, "x" * 10_000),
        _rec("s3", 0.0, None, error="TimeoutError: 5 s", outcome="agent_error"),
        _rec("s4", 0.0, None, error="ConnectionError: refused", outcome="infra_error", attempts=3),
    ]
    with Archive(path) as a:
        cid = a.add(make("A"))
        ev = a.record_result(cid, _result(records))
        assert (ev.n, ev.n_infra, ev.incomplete) == (3, 1, False)
        got = a.get_evaluation(cid, "rg/arith")
        assert got == ev
        assert got is not None and got.mean == pytest.approx(1 / 3)
        assert got.outcomes == {"s1": "scored", "s2": "scored", "s3": "agent_error", "s4": "infra_error"}
        assert got.answers["s1"] == "42" and got.answers["s3"] is None and got.answers["s4"] is None
        long = got.answers["s2"]
        assert long is not None and len(long.encode()) <= ANSWER_MAX_BYTES and "truncated: 10000" in long
        assert [s.attempts for s in got.scores] == [1, 1, 1, 3]
        assert got.score_by_id() == {"s1": 1.0, "s2": 0.0, "s3": 0.0}
        cand = a.get(cid)
        assert cand.fitness == pytest.approx(1 / 3) and cand.n == 3
        assert (cand.n_infra, cand.incomplete) == (1, False)
        text = a.export_json()
    assert SECRET not in text
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT scores, usage, n_infra, incomplete FROM agentmeta_evaluations").fetchall()
    finally:
        conn.close()
    scores, usage = json.loads(rows[0][0]), json.loads(rows[0][1])
    assert SECRET not in rows[0][0]
    assert set(scores[0]) == {"sample_id", "score", "error", "outcome", "answer", "attempts"}
    assert (rows[0][2], rows[0][3], usage["calls"]) == (1, 0, 4) and "n_infra" not in usage


def test_old_format_entries_still_load(tmp_path: Path, make) -> None:
    """Rows written before answers/outcomes/n_infra existed read with defaults."""
    path = tmp_path / "old.db"
    with Archive(path) as a:
        cid = a.add(make("Old"))
        a.record_evaluation(cid, "s", [{"sample_id": "a", "score": 1.0}, {"sample_id": "b", "score": 0.0}])
    old_scores = [
        {"sample_id": "a", "score": 1.0, "error": None},
        {"sample_id": "b", "score": 0.0, "error": "Timeout"},
    ]
    old_usage = {"calls": 2, "prompt_tokens": 5, "completion_tokens": 1, "cached_calls": 0}
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE agentmeta_evaluations SET scores = ?, usage = ?",
            (json.dumps(old_scores), json.dumps(old_usage)),
        )
    conn.close()
    with Archive(path) as a:
        ev = a.get(cid).evaluations[0]
        assert [(s.outcome, s.answer, s.attempts) for s in ev.scores] == [
            ("scored", None, 1),
            ("agent_error", None, 1),
        ]
        assert (ev.n_infra, ev.incomplete, ev.usage.calls) == (0, False, 2)
        assert ev.answers == {"a": None, "b": None}
        assert [e.name for e in a.leaderboard("s")] == ["Old"]
        # an old export (no new keys anywhere) imports too
        doc = json.loads(a.export_json())
    for c in doc["candidates"]:
        for e in c["evaluations"]:
            e.pop("n_infra"), e.pop("incomplete")
            e["scores"] = old_scores
    (tmp_path / "old.json").write_text(json.dumps(doc))
    with Archive(tmp_path / "fresh.db") as fresh:
        fresh.import_json(tmp_path / "old.json")
        ev = fresh.get(cid).evaluations[0]
        assert [s.outcome for s in ev.scores] == ["scored", "agent_error"] and ev.n_infra == 0


def test_incomplete_evaluation_never_leads(archive: Archive, make) -> None:
    good = archive.add(make("good"))
    spoiled = archive.add(make("spoiled"))
    recs = [_rec(f"s{i}", 1.0) for i in range(2)]
    recs += [_rec(f"s{i}", 0.0, None, error="ConnectionError", outcome="infra_error") for i in range(2, 8)]
    archive.record_result(good, _result([_rec("s0", 1.0), _rec("s1", 0.0)]))
    ev = archive.record_result(spoiled, _result(recs, incomplete=True))
    assert ev.incomplete and ev.mean == 1.0 and ev.n_infra == 6  # the evaluation keeps what it saw
    c = archive.get(spoiled)
    assert c.fitness is None and c.ci_low is None and c.n is None
    assert c.incomplete and c.n_infra == 6 and c.metadata[FITNESS_INFRA_KEY]["stage"] == "full"
    for suite in (None, "rg/arith"):
        assert [e.name for e in archive.leaderboard(suite)] == ["good"]
        board = archive.leaderboard(suite, include_incomplete=True)
        assert [(e.name, e.incomplete, e.fitness) for e in board] == [
            ("good", False, 0.5),
            ("spoiled", True, None),
        ]
        assert board[1].n_infra == 6 and board[1].n == 2
        assert archive.leaderboard(suite, limit=1, include_incomplete=True)[0].name == "good"
    unscored = archive.add(make("unscored"))
    assert [e.id for e in archive.leaderboard(include_unscored=True)] == [good, spoiled, unscored]
    assert "spoiled" not in archive.summary_for_prompt()
    # a complete evaluation of another stage speaks for the suite; a complete primary one restores fitness
    archive.record_result(spoiled, _result([_rec("s0", 0.0)]), stage="subset", primary=False)
    assert [(e.name, e.stage) for e in archive.leaderboard("rg/arith")] == [
        ("good", "full"),
        ("spoiled", "subset"),
    ]
    archive.record_result(spoiled, _result([_rec("s0", 1.0), _rec("s1", 1.0)]))
    c = archive.get(spoiled)
    assert c.fitness == 1.0 and not c.incomplete and FITNESS_INFRA_KEY not in c.metadata
    assert archive.leaderboard()[0].name == "spoiled"


def test_answers_and_infra_round_trip_through_export(tmp_path: Path, archive: Archive, make) -> None:
    a = archive.add(make("A"))
    b = archive.add(make("B", parent_ids=[a]))
    archive.record_result(a, _result([_rec("s0", 1.0, "yes"), _rec("s1", 0.0, "no", attempts=2)]))
    lost = [_rec("s0", 1.0, "ok"), _rec("s1", 0.0, None, error="OSError", outcome="infra_error", attempts=3)]
    archive.record_result(b, _result(lost, incomplete=True))
    out = tmp_path / "e.json"
    archive.export_json(out)
    doc = json.loads(out.read_text())
    ev_b = doc["candidates"][1]["evaluations"][0]
    assert (ev_b["n_infra"], ev_b["incomplete"]) == (1, True)
    assert ev_b["scores"][1] == {
        "sample_id": "s1", "score": 0.0, "error": "OSError", "outcome": "infra_error", "answer": None, "attempts": 3,
    }  # fmt: skip
    with Archive(tmp_path / "copy.db") as copy:
        copy.import_json(out)
        for cid in (a, b):
            assert copy.get(cid) == archive.get(cid)
        assert copy.get(b).incomplete and copy.get(a).evaluations[0].answers == {"s0": "yes", "s1": "no"}
        assert copy.leaderboard(include_incomplete=True) == archive.leaderboard(include_incomplete=True)
