"""No validation or test target ever reaches a model: every prompt a campaign sends is checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentmeta import get_model
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from tests.search.conftest import graph_meta_reply


def _suite(tmp_path: Path) -> tuple[str, set[str], set[str]]:
    rows, hidden, shown = [], set(), set()
    for i in range(32):
        split = "train" if i < 8 else "validation" if i < 20 else "test"
        target = f"QX{i:02d}ZEBRA" if split != "train" else f"TR{i:02d}OK"
        (shown if split == "train" else hidden).add(target)
        rows.append({"input": f"What is the code word of item {i}?", "target": target, "split": split})
    path = tmp_path / "codes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path), hidden, shown


@pytest.mark.parametrize(
    ("strategy", "extra"),
    [("meta-agent", {}), ("evolve", {}), ("random", {}), ("prompt", {}), ("bayes", {}), ("tree", {}),
     ("random", {"race": [3], "promote_margin": 1.0}), ("bayes", {"parallel": 2})],  # racing, rounds
)  # fmt: skip
def test_every_prompt_a_campaign_sends_is_free_of_validation_and_test_targets(tmp_path, strategy, extra) -> None:
    suite, hidden, shown = _suite(tmp_path)
    task = get_model("mock", outputs=lambda req: "I am not sure.\nAnswer: unknown")
    meta = get_model("mock", outputs=graph_meta_reply([0]))
    config = SearchConfig(suite=suite, kind="graph", strategy=strategy, iterations=3, subset=2, full=4,
                          reflexion_rounds=1, **extra)  # fmt: skip
    Campaign(config, Archive(tmp_path / "a.db"), model=task, meta_model=meta).run()
    prompts = [m.content for r in task.provider.requests + meta.provider.requests for m in r.messages]
    assert prompts
    leaked = {t for t in hidden if any(t in p for p in prompts)}
    assert not leaked, f"validation/test targets in prompts: {sorted(leaked)[:5]}"
