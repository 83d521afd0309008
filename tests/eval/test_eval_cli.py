from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from agentmeta.eval.types import load_results

runner = CliRunner()


def write_user_file(tmp_path: Path, n: int = 6) -> Path:
    path = tmp_path / "my.jsonl"
    # the mock model echoes the prompt, so `contains` scores every sample as a hit
    path.write_text(
        "".join(json.dumps({"input": f"say word{i}", "target": f"word{i}"}) + "\n" for i in range(n))
    )
    return path


def test_suites_lists_names_and_split_sizes(cli_app: typer.Typer) -> None:
    result = runner.invoke(cli_app, ["suites", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert {"gsm8k", "gpqa", "aime2025", "mmlu", "humaneval", "arc", "drop-lite", "rg/<task>"} <= set(rows)
    assert (rows["gsm8k"]["train"], rows["gsm8k"]["validation"], rows["gsm8k"]["test"]) == (256, 128, 935)
    assert (rows["aime2025"]["validation"], rows["aime2025"]["test"]) == (10, 15)
    table = runner.invoke(cli_app, ["suites"])
    assert table.exit_code == 0 and "humaneval" in table.stdout and "13553" in table.stdout


def test_eval_user_file_prints_table_and_writes_results(cli_app: typer.Typer, tmp_path: Path) -> None:
    data = write_user_file(tmp_path)
    out = tmp_path / "res" / "out.json"
    result = runner.invoke(
        cli_app,
        [
            "eval",
            "direct",
            "--suite",
            f"{data}?scorer=contains",
            "--model",
            "mock",
            "--split",
            "all",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "score" in result.stdout and "95% CI" in result.stdout and "1.000" in result.stdout
    (saved,) = load_results(out)
    assert saved.n == 6 and saved.mean == 1.0 and len(saved.records) == 6 and saved.agent == "direct"


def test_eval_several_suites_as_json(cli_app: typer.Typer, tmp_path: Path) -> None:
    data = write_user_file(tmp_path)
    result = runner.invoke(
        cli_app,
        [
            "eval",
            "cot",
            "-s",
            f"{data}?scorer=contains",
            "-s",
            "gsm8k",
            "--model",
            "mock",
            "--limit",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summaries = json.loads(result.stdout)
    assert [s["suite"] for s in summaries] == [str(data), "gsm8k"]
    assert [s["n"] for s in summaries] == [2, 2]
    assert summaries[0]["mean"] == 1.0 and "records" not in summaries[0]


def test_cli_errors_are_one_line_with_exit_code_2(cli_app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(cli_app, ["eval", "cot", "--suite", "nope", "--model", "mock"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown suite 'nope'; available: ")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "target": "b"}\n{"question": "c"}\n')
    result = runner.invoke(cli_app, ["eval", "direct", "--suite", str(bad), "--model", "mock"])
    assert result.exit_code == 2 and "line 2: missing field 'input'" in result.stderr
    result = runner.invoke(cli_app, ["eval", "nope", "--suite", "gsm8k", "--model", "mock", "--limit", "1"])
    assert result.exit_code == 2 and "unknown agent 'nope'" in result.stderr
    result = runner.invoke(
        cli_app, ["eval", "direct", "--suite", "gsm8k", "--model", "nope/x", "--limit", "1"]
    )
    assert result.exit_code == 2 and "unknown model spec" in result.stderr
