"""`agentmeta search --config FILE`: a campaign's stored settings (`agentmeta archive config`) run it
again; command-line options override the file; bad files are one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml
from typer.testing import CliRunner

from agentmeta.archive import Archive
from agentmeta.cli import app
from agentmeta.errors import ConfigError

MODEL = "mock/tests.search.conftest:task_reply"


def _designs(db, campaign: str) -> list[tuple[str, str, str, float | None]]:
    archive = Archive(db, create=False)
    camp = archive.get_campaign(campaign)
    out = []
    for c in sorted(archive.candidates(campaign=camp.id), key=lambda c: c.created_at):
        source = re.sub(r"\[[0-9a-f]{12}\]", "[id]", c.source)  # a parent's id differs per archive
        out.append((c.name, source, c.status, c.fitness))
    return out


def test_a_campaign_runs_again_from_its_stored_settings(tmp_path, suite_file):
    runner = CliRunner()
    args = ["search", "--suite", suite_file, "--kind", "graph", "--strategy", "random", "--seeds", "cot",
            "--iterations", "3", "--subset", "2", "--full", "4", "--no-confirm", "--model", MODEL,
            "--seed", "5", "--name", "orig", "--parallel", "2"]  # fmt: skip
    first = runner.invoke(app, [*args, "--archive", str(tmp_path / "a.db")])
    assert first.exit_code == 0, first.output
    out = runner.invoke(app, ["archive", "config", "orig", "--archive", str(tmp_path / "a.db"), "-o", str(tmp_path / "run.yaml")])
    assert out.exit_code == 0, out.output
    settings = yaml.safe_load((tmp_path / "run.yaml").read_text())
    assert settings["suite"] == suite_file and settings["iterations"] == 3 and settings["seed"] == 5
    assert settings["model"] == MODEL and settings["parallel"] == 2 and settings["confirm"] is False
    again = runner.invoke(app, ["search", "--config", str(tmp_path / "run.yaml"), "--archive", str(tmp_path / "b.db")])
    assert again.exit_code == 0, again.output
    assert len(_designs(tmp_path / "a.db", "orig")) == 4  # the seed and three candidates
    assert _designs(tmp_path / "b.db", "orig") == _designs(tmp_path / "a.db", "orig")
    # an option on the command line wins over the file (a budget: the same campaign, extended)
    more = runner.invoke(app, ["search", "--config", str(tmp_path / "run.yaml"), "--iterations", "4",
                               "--archive", str(tmp_path / "b.db")])  # fmt: skip
    assert more.exit_code == 0, more.output
    assert len(_designs(tmp_path / "b.db", "orig")) == 5, more.output


def test_bad_config_files_are_one_line_errors(tmp_path, suite_file):
    runner = CliRunner()
    cases = {
        "missing.yaml": None,
        "list.yaml": "- a\n- b\n",
        "unknown.yaml": f"suite: {suite_file}\nstrategie: random\n",
        "nosuite.yaml": "strategy: random\n",
        "broken.yaml": "suite: [unclosed\n",
    }
    expected = {
        "missing.yaml": "No such file", "list.yaml": "expected a mapping", "unknown.yaml": "unknown settings strategie",
        "nosuite.yaml": "no suite", "broken.yaml": "not YAML or JSON",
    }  # fmt: skip
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        res = runner.invoke(app, ["search", "--config", str(tmp_path / name), "--archive", str(tmp_path / "x.db")])
        assert isinstance(res.exception, ConfigError), (name, res.output)
        message = str(res.exception)
        assert expected[name] in message and "\n" not in message, (name, message)
    res = runner.invoke(app, ["search", "--archive", str(tmp_path / "x.db")])
    assert isinstance(res.exception, ConfigError) and "give --suite" in str(res.exception)
    res = runner.invoke(app, ["archive", "config", "nope", "--archive", str(tmp_path / "x.db")])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    # the command itself: one line on stderr, exit code 2
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "agentmeta", "search", "--config", str(tmp_path / "unknown.yaml")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "unknown settings strategie" in proc.stderr


def test_eval_and_confirm_take_config_files_too(tmp_path, suite_file):
    import json

    runner = CliRunner()
    run = tmp_path / "eval.yaml"
    run.write_text(yaml.safe_dump({"agent": "cot", "suite": suite_file, "limit": 3, "model": MODEL, "seed": 2}))
    res = runner.invoke(app, ["eval", "--config", str(run), "--json"])
    assert res.exit_code == 0, res.output
    (summary,) = json.loads(res.stdout)
    assert summary["n"] == 3 and summary["agent"] == "cot"
    # the command line wins over the file; the file fills what the command line leaves out
    res = runner.invoke(app, ["eval", "--config", str(run), "--limit", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["n"] == 2
    res = runner.invoke(app, ["eval", "direct", "--config", str(run), "--json"])
    assert json.loads(res.stdout)[0]["agent"] == "direct"
    (tmp_path / "bad.yaml").write_text("agent: cot\nsuites: x\n")
    res = runner.invoke(app, ["eval", "--config", str(tmp_path / "bad.yaml")])
    assert isinstance(res.exception, ConfigError) and "unknown settings suites" in str(res.exception)
    res = runner.invoke(app, ["eval", "cot"])
    assert isinstance(res.exception, ConfigError) and "give --suite" in str(res.exception)
    # confirm: a campaign's confirmation from a file of its settings (a suite with a test split)
    from tests.search.test_reflective import write_suite

    db, with_test = str(tmp_path / "c.db"), write_suite(tmp_path)
    args = ["search", "--suite", with_test, "--kind", "graph", "--strategy", "random", "--seeds", "cot",
            "--iterations", "1", "--subset", "2", "--full", "4", "--no-confirm", "--model", MODEL, "--name", "c"]  # fmt: skip
    assert runner.invoke(app, [*args, "--archive", db]).exit_code == 0
    (tmp_path / "confirm.yaml").write_text(yaml.safe_dump({"campaign": "c", "archive": db, "limit": 3}))
    res = runner.invoke(app, ["confirm", "--config", str(tmp_path / "confirm.yaml")])
    assert res.exit_code == 0, res.output
    looks = Archive(db, create=False).test_looks()
    assert len(looks) == 1 and len(looks[0].sample_ids) == 3, res.output
