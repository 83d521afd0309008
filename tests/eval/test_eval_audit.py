"""Label checks: wrong reference answers are found by `suites check` and dropped on load."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentmeta.eval.audit import arithmetic_problem, audit_suite, exact_value
from agentmeta.eval.suites import load_suite
from agentmeta.eval.types import Sample

MAIN_JOB = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
runner = CliRunner()


def test_exact_value_of_arithmetic_expressions() -> None:
    assert exact_value("7 / 4") == Fraction(7, 4)
    assert exact_value("2 + 3 * (4 - 1)") == 11
    assert exact_value("-3 - -2") == -1
    assert (
        exact_value("import os") is None and exact_value("x + 1") is None and exact_value("2 ** 99") is None
    )
    rg = lambda expr, target: Sample(id="x", input="", target=target, metadata={"rg": {"expression": expr}})  # noqa: E731
    assert arithmetic_problem(rg("4 / 1", "2")) == "4 / 1 = 4, target 2"
    assert arithmetic_problem(rg("7 / 4", "1.75")) is None
    assert arithmetic_problem(rg("2 / 3", "0.667")) is None  # rounded to the target's decimals
    assert arithmetic_problem(rg("2 / 3", "0.6")) is not None
    assert "undefined" in (arithmetic_problem(rg("3 / 0", "18")) or "")
    assert arithmetic_problem(rg("4 + 4", "eight")) is None  # not a number: the check does not apply


def _rg_item(text: str, expression: str, target: str) -> Sample:
    return Sample(id="x", input=text, target=target, metadata={"rg": {"expression": expression}})


def test_integer_target_for_a_fraction_is_a_bad_label() -> None:
    # rounding is accepted only to the decimals the target itself is written with: "2" for 6 / 4
    # is not 1.5 rounded to 0 decimals, it is a wrong label
    assert arithmetic_problem(_rg_item("Calculate 6 / 4.", "6 / 4", "2")) == "6 / 4 = 1.5, target 2"
    assert arithmetic_problem(_rg_item("Calculate 7 / 2.", "7 / 2", "4")) is not None
    assert arithmetic_problem(_rg_item("Calculate 2 / 3.", "2 / 3", "1")) is not None
    assert arithmetic_problem(_rg_item("Calculate 6 / 4.", "6 / 4", "1.5")) is None
    assert arithmetic_problem(_rg_item("Calculate 1 / 3.", "1 / 3", "0.333")) is None
    assert arithmetic_problem(_rg_item("Calculate 1 / 3.", "1 / 3", "0.33")) is None
    assert arithmetic_problem(_rg_item("Calculate 1 / 3.", "1 / 3", "0.34")) is not None
    assert arithmetic_problem(_rg_item("Calculate 8 / 4.", "8 / 4", "2")) is None  # exact integer
    assert arithmetic_problem(_rg_item("Calculate 8 / 4.", "8 / 4", "2.0")) is None


def test_suites_check_flags_the_integer_target_of_six_over_four() -> None:
    # reasoning-gym 0.1.25 (seed 0) labels train item 401 "Calculate 6 / 4." with 2; 60 train
    # items reach it
    report = audit_suite(MAIN_JOB, limit=60)
    bad = {i.sample_id: i for i in report.issues if i.check == "arithmetic"}
    item = bad["rg/basic_arithmetic/0/401"]
    assert (item.split, item.input, item.target) == ("train", "Calculate 6 / 4.", "2")
    assert item.detail == "6 / 4 = 1.5, target 2"
    # and loading the train split (where demonstrations come from) drops it
    train = load_suite(MAIN_JOB, split="train", limit=60)
    assert "rg/basic_arithmetic/0/401" not in {s.id for s in train.samples}
    assert "Calculate 6 / 4." not in {s.input for s in train.samples}


def test_suites_check_finds_the_wrong_division_targets(cli_app: typer.Typer) -> None:
    result = runner.invoke(cli_app, ["suites", "check", MAIN_JOB, "--limit", "40", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    bad = {i["input"]: i for i in report["issues"] if i["check"] == "arithmetic"}
    # the items reported against reasoning-gym 0.1.25 (seed 0): "4 / 1" -> 2, "7 / 4" -> 28
    assert bad["Calculate 4 / 1."]["target"] == "2" and bad["Calculate 7 / 4."]["target"] == "28"
    assert all("/" in text for text in bad)  # additions and subtractions are right
    table = runner.invoke(cli_app, ["suites", "check", MAIN_JOB, "--limit", "40"])
    assert table.exit_code == 0 and "arithmetic" in table.stdout and "bad item" in table.stdout


def test_loaded_suite_no_longer_contains_them() -> None:
    report = audit_suite(MAIN_JOB, limit=40)
    flagged = {i.input for i in report.issues}
    assert flagged
    loaded = load_suite(MAIN_JOB, split="all", limit=120)
    assert not flagged & {s.input for s in loaded.samples}
    assert loaded.dropped.get("arithmetic", 0) > 0
    for s in loaded.samples:  # every kept item is right
        assert arithmetic_problem(s) is None
    raw = load_suite(MAIN_JOB, limit=40, checks=False)
    assert any(arithmetic_problem(s) for s in raw.samples) and not raw.dropped


def test_gold_answer_must_score_one_under_the_suites_scorer(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"input": f"q{i}", "target": str(i), "split": "validation"} for i in range(4)]
    # the numeric scorer can't read this one
    rows.append({"input": "q-bad", "target": "forty two", "split": "validation"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = load_suite(f"{path}?scorer=numeric")
    assert len(suite) == 4 and suite.dropped == {"gold_fails": 1}
    report = audit_suite(f"{path}?scorer=numeric")
    assert [(i.check, i.input) for i in report.issues] == [("gold_fails", "q-bad")]


@pytest.mark.parametrize("spec", ["gsm8k", "gpqa", "aime2025", "arc", "drop-lite"])
def test_shipped_fixed_suites_pass_the_audit_or_say_why(spec: str) -> None:
    report = audit_suite(spec, limit=60)
    assert report.items > 0
    # every issue names its check and item; the shipped fixed suites have no bad labels here
    assert report.issues == [], [i.model_dump() for i in report.issues[:3]]
