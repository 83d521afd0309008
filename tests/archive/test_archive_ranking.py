"""Leaderboards compare scores of the same stage only, and show tokens per sample."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from agentmeta.archive import Archive, Candidate
from agentmeta.cli.archive import register
from agentmeta.models.types import Usage


def _scores(values: list[float], infra: int = 0) -> list[dict]:
    rows = [{"sample_id": f"s{i}", "score": v} for i, v in enumerate(values)]
    return rows + [{"sample_id": f"x{i}", "score": 0.0, "outcome": "infra_error"} for i in range(infra)]


def _fill(a: Archive) -> dict[str, str]:
    ids = {
        "full-low": a.add(Candidate(name="full-low")),
        "subset-high": a.add(Candidate(name="subset-high")),
        "both": a.add(Candidate(name="both")),
        "imported": a.add(Candidate(name="imported", fitness=0.5, status="ok")),  # no stage: an ADAS import
    }
    a.record_evaluation(
        ids["full-low"], "s", _scores([1, 0, 0, 0] * 2), usage=Usage(prompt_tokens=70, completion_tokens=10)
    )
    a.record_evaluation(
        ids["subset-high"],
        "s",
        _scores([1, 1]),
        stage="subset",
        usage=Usage(prompt_tokens=30, completion_tokens=2),
    )
    # a subset stage with more samples than the full one: the full stage still speaks for it
    a.record_evaluation(ids["both"], "s", _scores([1] * 10), stage="subset", primary=False)
    a.record_evaluation(
        ids["both"], "s", _scores([1, 1, 0], infra=1), usage=Usage(prompt_tokens=36, completion_tokens=4)
    )
    return ids


def test_subset_only_scores_rank_after_every_full_stage_score(tmp_path: Path) -> None:
    with Archive(tmp_path / "a.db") as a:
        _fill(a)
        board = a.leaderboard()
        assert [(e.name, e.stage, e.subset_only) for e in board] == [
            ("both", "full", False),
            ("imported", None, False),
            ("full-low", "full", False),
            ("subset-high", "subset", True),  # 1.0 on 2 samples never outranks a full-stage 0.25
        ]
        per_suite = a.leaderboard("s")
        assert [(e.name, e.stage, e.n, e.subset_only) for e in per_suite] == [
            ("both", "full", 3, False),
            ("full-low", "full", 8, False),
            ("subset-high", "subset", 2, True),
        ]
        assert [(e.name, e.subset_only) for e in a.leaderboard("s", stage="subset")] == [
            ("subset-high", True),  # a tie at 1.0: the older candidate first
            ("both", True),
        ]
        assert [e.name for e in a.leaderboard(limit=1)] == ["both"]


def test_leaderboard_shows_tokens_per_sample(tmp_path: Path) -> None:
    with Archive(tmp_path / "a.db") as a:
        ids = _fill(a)
        for board in (a.leaderboard(), a.leaderboard("s")):
            tok = {e.name: (e.tokens_per_sample, e.completion_tokens_per_sample) for e in board}
            assert tok["full-low"] == (10.0, 1.25)
            assert tok["subset-high"] == (16.0, 1.0)
            assert tok["both"] == (10.0, 1.0)  # 40 tokens over 4 samples run, the infra one included
        assert {e.name: e.tokens_per_sample for e in a.leaderboard()}["imported"] is None
        ev = a.get_evaluation(ids["both"], "s")
        assert ev is not None and (ev.tokens_per_sample, ev.completion_tokens_per_sample) == (10.0, 1.0)


def test_archive_ls_marks_subset_only_and_prints_tok_per_sample(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with Archive(path) as a:
        ids = _fill(a)
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    register(app)
    runner = CliRunner()
    env = {"AGENTMETA_ARCHIVE": "", "COLUMNS": "200"}
    for extra in ([], ["--suite", "s"]):
        res = runner.invoke(app, ["archive", "ls", "-a", str(path), *extra], env=env)
        assert res.exit_code == 0, res.output
        out = res.stdout
        assert "tok/sample" in out and "1 subset only: scored on the cheap first stage only" in out
        line = next(x for x in out.splitlines() if "subset-high" in x)
        assert "subset only" in line and " 16 " in line
        assert out.index("full-low") < out.index("subset-high")
    rows = json.loads(runner.invoke(app, ["archive", "ls", "-a", str(path), "--json"], env=env).stdout)
    assert {r["name"]: (r["subset_only"], r["tokens_per_sample"]) for r in rows}["subset-high"] == (
        True,
        16.0,
    )
    res = runner.invoke(app, ["archive", "show", ids["both"], "-a", str(path), "--no-source"], env=env)
    assert res.exit_code == 0 and "tok/sample" in res.stdout and "compl./sample" in res.stdout
