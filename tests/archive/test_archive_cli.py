from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentmeta.archive import Archive, Candidate

ADAS = [
    {
        "thought": "t",
        "name": "CoT",
        "code": "def forward(self, taskInfo):\n    return 1\n",
        "fitness": "95% Bootstrap Confidence Interval: (10.0%, 30.0%), Median: 20.0%",
    },
    {
        "thought": "u",
        "name": "Debate",
        "code": "def forward(self, taskInfo):\n    return 2\n",
        "fitness": "95% Bootstrap Confidence Interval: (40.0%, 60.0%), Median: 50.0%",
    },
]


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)  # the default archive path is relative to the working directory
    return CliRunner()


def _invoke(runner: CliRunner, app: typer.Typer, *args: str, env: dict[str, str] | None = None):  # noqa: ANN202
    return runner.invoke(
        app, ["archive", *args], env={"AGENTMETA_ARCHIVE": "", "COLUMNS": "200", **(env or {})}
    )


def test_import_then_ls_json_and_table(tmp_path: Path, cli: typer.Typer, runner: CliRunner) -> None:
    (tmp_path / "adas.json").write_text(json.dumps(ADAS))
    res = _invoke(runner, cli, "import", "adas.json")
    assert res.exit_code == 0, res.output
    assert "imported 2 new candidates (0 already present)" in res.output
    assert (tmp_path / "agentmeta-archive.db").is_file()  # the default path
    res = _invoke(runner, cli, "ls", "--json")
    rows = json.loads(res.stdout)
    assert [(r["rank"], r["name"], r["fitness"]) for r in rows] == [(1, "Debate", 0.5), (2, "CoT", 0.2)]
    res = _invoke(runner, cli, "ls")
    assert res.exit_code == 0
    assert "Debate" in res.stdout and "[0.400,0.600]" in res.stdout
    assert res.stdout.index("Debate") < res.stdout.index("CoT")
    res = _invoke(runner, cli, "ls", "--limit", "1", "--json")
    assert [r["name"] for r in json.loads(res.stdout)] == ["Debate"]


def test_archive_option_and_env(tmp_path: Path, cli: typer.Typer, runner: CliRunner) -> None:
    path = tmp_path / "sub" / "x.db"
    with Archive(path) as a:
        a.add(Candidate(name="only", fitness=0.3, status="ok"))
    res = _invoke(runner, cli, "ls", "--archive", str(path), "--json")
    assert [r["name"] for r in json.loads(res.stdout)] == ["only"]
    res = _invoke(runner, cli, "ls", "--json", env={"AGENTMETA_ARCHIVE": str(path)})
    assert [r["name"] for r in json.loads(res.stdout)] == ["only"]


def test_show_lineage_export(tmp_path: Path, cli: typer.Typer, runner: CliRunner) -> None:
    path = tmp_path / "a.db"
    with Archive(path) as a:
        root = a.add(
            Candidate(name="Root", source="def forward(self, t):\n    return 'root'\n", thought="base")
        )
        kid = a.add(Candidate(name="Kid", parent_ids=[root], generation=1))
        a.record_evaluation(
            kid, "rg/arith", [{"sample_id": "1", "score": 1.0}, {"sample_id": "2", "score": 0.0}]
        )
    res = _invoke(runner, cli, "show", root[:6], "-a", str(path))
    assert res.exit_code == 0, res.output
    assert "return 'root'" in res.stdout and "base" in res.stdout and root in res.stdout
    res = _invoke(runner, cli, "show", kid, "-a", str(path), "--json")
    assert json.loads(res.stdout)["evaluations"][0]["mean"] == 0.5
    res = _invoke(runner, cli, "lineage", kid, "-a", str(path))
    assert res.exit_code == 0
    assert res.stdout.index("Root") < res.stdout.index("Kid") and "ancestor -1" in res.stdout
    lin = json.loads(_invoke(runner, cli, "lineage", root, "-a", str(path), "--json").stdout)
    assert [c["name"] for c in lin["children"]] == ["Kid"]
    res = _invoke(runner, cli, "export", "-a", str(path), "--out", "e.json")
    assert res.exit_code == 0
    doc = json.loads((tmp_path / "e.json").read_text())
    assert [c["name"] for c in doc["candidates"]] == ["Root", "Kid"]
    res = _invoke(runner, cli, "export", "-a", str(path))
    assert json.loads(res.stdout)["format"] == "agentmeta-archive"
    res = _invoke(runner, cli, "import", "e.json", "-a", "copy.db")
    assert res.exit_code == 0 and "imported 2 new" in res.stdout


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["ls"], "no archive at"),
        (["show", "abc"], "no archive at"),
        (["import", "missing.json"], "no file"),
        (["ls", "-a", "junk.db"], "not an SQLite database"),
    ],
)
def test_errors_are_one_line_exit_2(
    tmp_path: Path, cli: typer.Typer, runner: CliRunner, args: list[str], match: str
) -> None:
    (tmp_path / "junk.db").write_bytes(b"\x00garbage" * 100)
    res = _invoke(runner, cli, *args)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and match in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.output
    assert (tmp_path / "junk.db").read_bytes() == b"\x00garbage" * 100


def test_unknown_id_is_one_line(tmp_path: Path, cli: typer.Typer, runner: CliRunner) -> None:
    Archive(tmp_path / "a.db").close()
    res = _invoke(runner, cli, "show", "nope", "-a", str(tmp_path / "a.db"))
    assert res.exit_code == 2 and res.stderr.startswith("error: no candidate with id 'nope'")


def _scores(rows: list[tuple[str, float, str | None]], infra: tuple[str, ...] = ()) -> list[dict]:
    return [
        {"sample_id": sid, "score": score, "answer": answer}
        | ({"outcome": "infra_error", "error": "ConnectionError: refused"} if sid in infra else {})
        for sid, score, answer in rows
    ]


def _pair(path: Path) -> tuple[str, str]:
    with Archive(path) as a:
        x = a.add(Candidate(name="Alpha", id="aaaa11112222"))
        y = a.add(Candidate(name="Beta", id="bbbb11112222"))
        rows_x = [("q1", 1.0, "four"), ("q2", 1.0, "the answer is\n 7"), ("q3", 0.0, "12"), ("q4", 1.0, "3")]
        rows_x += [("q5", 1.0, "9"), ("q6", 1.0, "only A has this")]
        rows_y = [
            ("q1", 0.0, "five"),
            ("q2", 0.0, "8"),
            ("q3", 1.0, "13"),
            ("q4", 1.0, "3"),
            ("q5", 0.0, None),
        ]
        a.record_evaluation(x, "rg/arith", _scores(rows_x))
        a.record_evaluation(y, "rg/arith", _scores(rows_y, infra=("q5",)))
        a.record_evaluation(x, "rg/arith", _scores(rows_x[:2]), stage="subset")
        a.record_evaluation(y, "rg/arith", _scores(rows_y[:2]), stage="subset")
        a.record_evaluation(x, "other", _scores([("z", 1.0, "z")]))
    return x, y


def test_diff_api(tmp_path: Path) -> None:
    from agentmeta.eval.stats import paired_ci

    x, y = _pair(tmp_path / "a.db")
    with Archive(tmp_path / "a.db") as a:
        d = a.diff("aaaa", "bbbb", stage="full")
        assert (d.a, d.b, d.suite, d.split, d.stage, d.shared) == (x, y, "rg/arith", "validation", "full", 1)
        assert d.note is None
        assert (d.n, d.wins, d.losses, d.ties) == (4, 2, 1, 1)
        assert (d.left_out, d.only_a, d.only_b, d.infra) == (2, 1, 0, 1)
        assert [s.sample_id for s in d.samples] == ["q1", "q2", "q3"]
        assert (d.samples[0].answer_a, d.samples[0].answer_b) == ("four", "five")
        ref = paired_ci([1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0])
        assert (d.mean_diff, d.ci_low, d.ci_high, d.p_better) == (
            ref.mean_diff,
            ref.low,
            ref.high,
            ref.p_better,
        )
        assert (d.mean_a, d.mean_b) == (0.75, 0.5)
        # several shared evaluations and none chosen: the full (primary) one, and the note says so
        auto = a.diff(x, y)
        assert auto.stage == "full" and auto.shared == 2 and "rg/arith validation/full" in (auto.note or "")
        sub = a.diff(x, y, stage="subset")
        assert (sub.n, sub.wins, sub.losses, sub.left_out) == (2, 2, 0, 0)


def test_diff_cli_table_counts_and_ci(tmp_path: Path, cli: typer.Typer, runner: CliRunner) -> None:
    path = tmp_path / "a.db"
    x, y = _pair(path)
    res = _invoke(
        runner, cli, "diff", x[:6], y[:6], "-a", str(path), "--split", "validation", "--stage", "full"
    )
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "Alpha" in out and "Beta" in out and "rg/arith validation/full" in out
    for sid, ans_a, ans_b in [("q1", "four", "five"), ("q2", "the answer is 7", "8"), ("q3", "12", "13")]:
        line = next(line for line in out.splitlines() if line.split() and line.split()[0] == sid)
        assert ans_a in line and ans_b in line
    assert not any(line.split()[:1] == ["q4"] for line in out.splitlines())  # a tie is not listed
    assert "A wins 2, loses 1, ties 1 (of 4 samples compared)" in out
    assert "A - B: +0.250  95% CI [" in out
    assert "left out: 2 samples (1 only in A, 1 lost to infrastructure errors)" in out
    res = _invoke(runner, cli, "diff", x, y, "-a", str(path))  # none chosen: picks full, says so
    assert res.exit_code == 0 and "picked out of 2 shared evaluations" in res.stdout
    res = _invoke(runner, cli, "diff", x, y, "-a", str(path), "--stage", "full", "--json")
    doc = json.loads(res.stdout)
    assert (doc["wins"], doc["losses"], doc["ties"], doc["n"], doc["left_out"]) == (2, 1, 1, 4, 2)
    assert doc["ci_low"] <= doc["mean_diff"] == 0.25 <= doc["ci_high"]
    assert [s["sample_id"] for s in doc["samples"]] == ["q1", "q2", "q3"]
    assert doc["samples"][1]["answer_a"] == "the answer is\n 7"


def test_diff_without_shared_evaluation_is_one_line(
    tmp_path: Path, cli: typer.Typer, runner: CliRunner
) -> None:
    path = tmp_path / "a.db"
    x, y = _pair(path)
    with Archive(path) as a:
        z = a.add(Candidate(name="Gamma", id="cccc11112222"))
        a.record_evaluation(z, "rg/other", [{"sample_id": "q1", "score": 1.0}])
    for args in ([x, z], [x, y, "--suite", "nope"], [x, y, "--split", "test"]):
        res = _invoke(runner, cli, "diff", *args, "-a", str(path))
        assert res.exit_code == 2, res.output
        assert res.stderr.startswith("error: candidates ") and "share no evaluation" in res.stderr
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.output
    res = _invoke(runner, cli, "diff", x, "zzz", "-a", str(path))
    assert res.exit_code == 2 and res.stderr.startswith("error: no candidate with id 'zzz'")


def test_ls_flags_incomplete_candidates(tmp_path: Path, cli: typer.Typer, runner: CliRunner) -> None:
    path = tmp_path / "a.db"
    with Archive(path) as a:
        ok = a.add(Candidate(name="Fine"))
        bad = a.add(Candidate(name="Spoiled"))
        a.record_evaluation(ok, "s", [{"sample_id": "1", "score": 0.25}])
        lost = [{"sample_id": str(i), "score": 0.0, "outcome": "infra_error"} for i in range(3)]
        a.record_evaluation(bad, "s", [{"sample_id": "9", "score": 1.0}, *lost], incomplete=True)
    for args in ([], ["--suite", "s"]):
        res = _invoke(runner, cli, "ls", "-a", str(path), *args)
        assert res.exit_code == 0, res.output
        assert res.stdout.index("Fine") < res.stdout.index("Spoiled")
        assert "incomplete (3 infra errors)" in res.stdout and "1 incomplete" in res.stdout
        rows = json.loads(_invoke(runner, cli, "ls", "-a", str(path), "--json", *args).stdout)
        assert [(r["name"], r["fitness"], r["incomplete"]) for r in rows] == [
            ("Fine", 0.25, False),
            ("Spoiled", None, True),
        ]
    res = _invoke(runner, cli, "show", bad, "-a", str(path), "--no-source")
    assert res.exit_code == 0 and "incomplete evaluation: 3 infra errors" in res.stdout
