"""Meta-prompt policies: `fixed` and `evolve` (the reflector's and meta-agent's texts as candidates,
scored by how often their proposals beat the best seed on train minibatches)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentmeta import get_model
from agentmeta.archive import Archive
from agentmeta.errors import ConfigError
from agentmeta.prompts import load_template
from agentmeta.registry import registry
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.meta_prompt import STATE_KEY


def _suite(tmp_path: Path) -> str:
    rows = []
    for i in range(40):
        a, b = i % 7 + 2, i % 5 + 2
        split = "train" if i < 12 else "validation" if i < 28 else "test"
        rows.append({"input": f"What is {a} + {b}?", "target": str(a + b), "split": split})
    path = tmp_path / "adds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"{path}?scorer=numeric"


def _task(req) -> str:
    """Right when its instruction carries the trick word MARK, else right on odd first numbers only."""
    text = " ".join(m.content for m in req.messages)
    a, b = map(int, re.findall(r"What is (\d+) \+ (\d+)", text)[-1])
    return f"Answer: {a + b if 'MARK' in text or a % 2 == 1 else a + b + 1}"


def _meta(asked: list[str]):
    def reply(req) -> str:
        text = req.messages[-1].content
        if "Rewrite it so that" in text:
            asked.append("rewrite")
            return "```\nSay what went wrong, then put the word MARK in the new instruction.\n```"
        if "### Example" in text:  # the reflector
            return "```\nMARK: add the two numbers.\n```" if "MARK" in text else "```\nAdd the numbers.\n```"
        return "no JSON here"  # a meta-agent proposal: invalid

    return reply


def _campaign(tmp_path: Path, asked: list[str], iterations: int = 2, **kw):
    archive = Archive(tmp_path / "a.db")
    kw.setdefault("strategy", "prompt")
    config = SearchConfig(suite=_suite(tmp_path), kind="graph", seeds=["cot"], iterations=iterations,
                          subset=4, full=8, confirm=False, **kw)  # fmt: skip
    camp = Campaign(config, archive, model=get_model("mock", outputs=_task), meta_model=get_model("mock", outputs=_meta(asked)))
    return archive, camp, camp.run()


def test_policies_are_registered_and_an_unknown_one_is_refused(tmp_path):
    assert registry.names("meta_prompt")[:2] == ["fixed", "evolve"]
    with pytest.raises((ConfigError, ValueError), match="unknown meta-prompt policy 'nope'; registered: evolve, fixed"):
        SearchConfig(suite=_suite(tmp_path), kind="graph", meta_prompt="nope")


def test_evolve_keeps_the_reflector_whose_proposals_beat_the_seed_and_records_it(tmp_path):
    asked: list[str] = []
    archive, camp, _ = _campaign(tmp_path, asked, meta_prompt="evolve")
    state = archive.get_campaign(camp.record.id).state[STATE_KEY]
    refl = state["reflector"]
    # the two rewrites came back the same: kept once
    assert [v["wins"] for v in refl["variants"]] == [0, 3] and refl["chosen"] == 1
    assert refl["variants"][0]["text"] == load_template("reflect-instruction")
    assert "MARK" in refl["chosen_text"] and "{examples}" in refl["chosen_text"]
    assert "system" not in state  # the prompt strategy uses the reflector only: the system text is not calibrated
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    reflected = [c for c in children if c.name.startswith("reflect")]
    assert reflected and all("MARK" in c.source for c in reflected), [(c.name, c.source[:300]) for c in children]
    n = len(asked)
    assert n == 2  # two rewrites of the reflector, once
    _campaign(tmp_path, asked, iterations=3, meta_prompt="evolve")  # resumed: the stored choice, no new calibration
    assert len(asked) == n


def test_fixed_uses_the_built_in_reflector(tmp_path):
    asked: list[str] = []
    archive, camp, _ = _campaign(tmp_path, asked)
    assert STATE_KEY not in archive.get_campaign(camp.record.id).state and not asked
    children = [c for c in archive.candidates(campaign=camp.record.id) if c.generation > 0]
    assert not any("MARK" in c.source for c in children)


def test_evolve_calibrates_the_meta_agents_system_message_for_the_meta_agent(tmp_path):
    asked: list[str] = []
    archive, camp, _ = _campaign(tmp_path, asked, iterations=1, meta_prompt="evolve", strategy="meta-agent")
    state = archive.get_campaign(camp.record.id).state[STATE_KEY]
    assert set(state) == {"system"} and len(state["system"]["variants"]) == 2
    assert state["system"]["chosen"] == 0  # no proposal parsed, so no variant won: the built-in text is kept
    assert all(v["trials"] == 3 and v["wins"] == 0 for v in state["system"]["variants"])


@pytest.mark.embedded
def test_evolve_calibrates_the_reflector_on_the_embedded_model(embedded, tmp_path, monkeypatch):
    """The real model rewrites the reflector's directive and proposes with both texts; the choice
    and each variant's wins are stored in the campaign."""
    import agentmeta.search.meta_prompt as mp

    monkeypatch.setattr(mp, "VARIANTS", 1)
    monkeypatch.setattr(mp, "TRIALS", 1)
    monkeypatch.setattr(mp, "MINIBATCH", 2)
    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    archive = Archive(tmp_path / "e.db")
    config = SearchConfig(suite=suite, kind="graph", strategy="prompt", seeds=["cot"], iterations=0, subset=2,
                          full=4, confirm=False, concurrency=8, meta_prompt="evolve")  # fmt: skip
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    camp.run()  # the seed's full-stage score: the parent the variants propose children of
    texts = mp.meta_prompts(camp._context(1), need="reflector")
    state = archive.get_campaign(camp.record.id).state[STATE_KEY]["reflector"]
    assert len(state["variants"]) == 2 and state["variants"][0]["text"] == load_template("reflect-instruction")
    assert "{examples}" in state["variants"][1]["text"] and state["variants"][1]["text"] != state["variants"][0]["text"]
    assert all(v["trials"] <= 1 for v in state["variants"]) and state["chosen"] in (0, 1)
    assert texts.reflector == state["chosen_text"]
