"""A small user suite and scripted task/meta models for campaign tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROBLEMS = [
    (f"What is {a} + {b}?", str(a + b))
    for a, b in [
        (1, 2),
        (3, 4),
        (5, 6),
        (7, 8),
        (2, 2),
        (9, 1),
        (4, 4),
        (6, 3),
        (8, 8),
        (5, 5),
        (7, 2),
        (3, 3),
    ]
]


def write_suite(folder: Path) -> str:
    """The PROBLEMS as a validation-only JSONL suite in `folder`; returns its spec."""
    path = folder / "adds.jsonl"
    with path.open("w") as f:
        for q, a in PROBLEMS:
            f.write(json.dumps({"input": q, "target": a, "split": "validation"}) + "\n")
    return f"{path}?scorer=numeric"


@pytest.fixture
def suite_file(tmp_path: Path) -> str:
    return write_suite(tmp_path)


def task_reply(req) -> str:
    """Answers additions right unless the prompt was written by a 'sloppy' role."""
    text = " ".join(m.content for m in req.messages)
    import re

    nums = re.findall(r"What is (\d+) \+ (\d+)", text)
    if not nums:
        return "Answer: 0"
    a, b = map(int, nums[-1])
    if "sloppy" in text.lower():
        return f"Answer: {a + b + 1}"
    return f"Answer: {a + b}"


def graph_meta_reply(i_holder: list[int]):
    def reply(req) -> str:
        i_holder[0] += 1
        role = "sloppy clerk" if i_holder[0] % 2 else "careful accountant"
        return json.dumps(
            {
                "thought": f"idea {i_holder[0]}",
                "name": f"pipeline-{i_holder[0]}",
                "steps": [{"type": "llm", "role": role, "instruction": "Add the numbers."}],
            }
        )

    return reply
