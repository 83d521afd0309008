"""An archive made by a short mock campaign (confirmed on test samples), with hostile names."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_THOUGHT = '<img src=x onerror="alert(2)"> bold <b>claim</b>'

PAIRS = [(a, b) for a in range(1, 8) for b in range(2, 6)]  # 28 problems


def write_suite(path: Path) -> str:
    with path.open("w") as f:
        for i, (a, b) in enumerate(PAIRS):
            split = "test" if i % 3 == 0 else "validation"
            f.write(json.dumps({"input": f"What is {a} + {b}?", "target": str(a + b), "split": split}) + "\n")
    return f"{path}?scorer=numeric"


def task_reply(req) -> str:
    """A 'careful' role is always right, a 'sloppy' one always wrong, others right on even first
    terms only; answers to "... + 4" carry markup."""
    text = " ".join(m.content for m in req.messages)
    nums = re.findall(r"What is (\d+) \+ (\d+)", text)
    if not nums:
        return "Answer: 0"
    a, b = map(int, nums[-1])
    if "sloppy" in text.lower():
        return f"Answer: {a + b + 1}"
    if b == 4:
        return f"Answer: <i>{a + b}</i><script>alert(3)</script>"
    if "careful" in text.lower() or a % 2 == 0:
        return f"Answer: {a + b}"
    return f"Answer: {a + b - 1}"


def meta_reply():
    state = {"i": 0}

    def reply(req) -> str:
        state["i"] += 1
        i = state["i"]
        role = "sloppy clerk" if i % 3 == 1 else "careful accountant"
        name = HOSTILE_NAME if i == 2 else f"pipeline-{i}"
        return json.dumps(
            {
                "thought": HOSTILE_THOUGHT if i == 2 else f"idea {i}",
                "name": name,
                "steps": [{"type": "llm", "role": role, "instruction": "Add the numbers."}],
            }
        )

    return reply


def make_archive(tmp: Path, iterations: int = 4) -> tuple[str, str]:
    """(archive path, campaign name) of a finished, confirmed mock campaign."""
    from agentmeta import get_model
    from agentmeta.archive import Archive
    from agentmeta.search import Campaign, SearchConfig

    suite = write_suite(tmp / "adds.jsonl")
    path = tmp / "ui.db"
    config = SearchConfig(
        suite=suite, kind="graph", strategy="meta-agent", iterations=iterations, subset=4, full=8,
        reflexion_rounds=0, confirm=True, confirm_limit=8, name="ui-demo",
    )  # fmt: skip
    with Archive(path) as archive:
        Campaign(
            config, archive, model=get_model("mock", outputs=task_reply), meta_model=get_model("mock", outputs=meta_reply())
        ).run()
    return str(path), "ui-demo"


@pytest.fixture(scope="session")
def ui_archive(tmp_path_factory) -> tuple[str, str]:
    return make_archive(tmp_path_factory.mktemp("ui"))
