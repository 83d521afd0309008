from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentmeta.archive import Archive, Candidate
from agentmeta.cli.archive import register

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
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app."""

    register(app)
    return app


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
