"""A suite file with train, validation and test rows, a task model whose skill depends on a word of
the prompt, and a strategy proposing fixed prompt candidates with chosen parents."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentmeta import get_model
from agentmeta.agents.base import AgentSpec
from agentmeta.archive import Archive
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.strategy import Proposal

# The first four validation rows are the subset stage (file order is kept when the whole split is
# taken): two of them have an odd first number, so a "halfway" candidate scores 0.5 there.
VALIDATION = [(1, 2), (2, 2), (3, 4), (4, 4), (5, 6), (6, 6), (7, 8), (8, 8)]
TRAIN = [(10, 1), (10, 2)]
TEST = [(21, 2), (22, 3), (23, 4), (24, 5), (25, 6), (26, 7), (27, 8), (28, 9), (29, 1), (30, 2)]


def write_suite(path: Path) -> str:
    rows = [("validation", VALIDATION), ("train", TRAIN), ("test", TEST)]
    with path.open("w") as f:
        for split, pairs in rows:
            for a, b in pairs:
                f.write(
                    json.dumps({"input": f"What is {a} + {b}?", "target": str(a + b), "split": split}) + "\n"
                )
    return f"{path}?scorer=numeric"


def skill_reply(req) -> str:
    """Right when the prompt says 'meticulous'; on odd first numbers only when it says 'halfway';
    otherwise wrong (the prompt seed, 'a careful problem solver', is always wrong)."""
    text = " ".join(m.content for m in req.messages)
    nums = re.findall(r"What is (\d+) \+ (\d+)", text)
    if not nums:
        return "Answer: 0"
    a, b = map(int, nums[-1])
    if "meticulous" in text or ("halfway" in text and a % 2 == 1):
        return f"Answer: {a + b}"
    return f"Answer: {a + b + 1}"


def prompt_spec(name: str, word: str, pad: int = 0) -> AgentSpec:
    source = json.dumps({"system": f"You are {word}." + " really" * pad, "template": "{input}\nAnswer: <n>"})
    return AgentSpec(kind="prompt", name=name, thought=f"be {word}", source=source)


class Scripted:
    """A strategy proposing fixed candidates with chosen parents (by name, `seed` for the seed)."""

    name = "scripted"

    def __init__(self, plan: list[tuple[str, str, int, list[str]]]) -> None:
        self.plan = plan

    def propose(self, ctx) -> Proposal:
        name, word, pad, parents = self.plan[ctx.iteration]
        by_name = {("seed" if c.generation == 0 else c.name): c.id for c in ctx.candidates}
        return Proposal(spec=prompt_spec(name, word, pad), parent_ids=[by_name[p] for p in parents])

    def debug(self, ctx, proposal, error, attempt):
        return None


PLAN = [
    ("A-meticulous", "meticulous", 0, ["seed"]),  # 1.0 on the subset vs its parent's 0.0: full stage
    ("B-halfway", "halfway", 0, ["seed"]),  # 0.5 vs its parent's 0.0: full stage (0.5 < best 1.0 - 0.1)
    ("C-halfway", "halfway", 3, ["A-meticulous"]),  # 0.5 vs its parent's 1.0: stays on the subset
    ("D-meticulous", "meticulous", 6, []),  # no parent: the fallback rule (best subset so far)
]


def run_scripted(tmp_path: Path, suite: str, **kw):
    archive = Archive(tmp_path / "a.db")
    config = SearchConfig(suite=suite, kind="prompt", iterations=len(PLAN), subset=4, full=8, **kw)
    events: list[dict] = []
    camp = Campaign(
        config, archive, model=get_model("mock", outputs=skill_reply), meta_model=get_model("mock"),
        strategy=Scripted(PLAN), progress=events.append,
    )  # fmt: skip
    result = camp.run()
    by_name = {c.name: c for c in archive.candidates(campaign=camp.record.id)}
    return archive, camp, result, by_name, events
