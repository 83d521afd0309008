"""Strategies ask a kind for capabilities, never for its name: a kind registered the way a plugin
registers one, with an instruction slot, is searched by `prompt` and `bayes`; a registered
operator is drawn by `random` and `evolve`; and no strategy module compares a kind with a name."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from agentmeta import get_model
from agentmeta.agents import (
    AgentKind,
    AgentSpec,
    Slot,
    kind_names,
    parse_spec,
    register_kind,
    set_slot,
    slots_of,
)
from agentmeta.archive import Archive
from agentmeta.errors import InvalidAgentError
from agentmeta.registry import registry
from agentmeta.search import Campaign, NotApplicable, SearchConfig, register_operator
from agentmeta.search.evolve import EvolveSearch
from agentmeta.search.operators import INSTRUCTIONS
from agentmeta.search.random_search import RandomSearch
from tests.search.test_reflective import MAGIC, careful_task, reflector, write_suite
from tests.search.test_strategies import ctx_for, seed_candidates

SEARCH = Path(__file__).resolve().parents[2] / "agentmeta" / "search"


class MemoAgent:
    """One call: the task, then the spec's instruction, then the answer line."""

    def __init__(self, instruction: str, name: str) -> None:
        self.instruction, self.name = instruction, name

    def run(self, task_input: str, model) -> str:
        prompt = f"{task_input}\n\n{self.instruction}\nEnd with a line 'Answer: <your answer>'."
        return model.generate(prompt, max_tokens=32).text


def _memo_slots(spec: AgentSpec) -> list[Slot]:
    instruction = json.loads(spec.source)["instruction"]
    return [
        Slot(index=0, name="memo", prompt="{input}\n\n" + instruction, settable=frozenset({"instruction"}))
    ]


def _memo_set(spec: AgentSpec, index: int, changes: dict) -> AgentSpec:
    source = json.dumps({"instruction": changes.get("instruction", json.loads(spec.source)["instruction"])})
    return AgentSpec(kind="memo", name=changes.get("name", spec.name), thought=changes.get("thought", spec.thought),
                     source=source)  # fmt: skip


MEMO = AgentKind(
    name="memo",
    description="one call with an instruction after the task",
    build=lambda spec: MemoAgent(json.loads(spec.source)["instruction"], spec.name),
    seeds=lambda: [
        AgentSpec(kind="memo", name="plain memo", source=json.dumps({"instruction": "Solve it."}))
    ],
    slots=_memo_slots,
    set_slot=_memo_set,
)


@pytest.fixture
def memo():
    register_kind(MEMO)
    try:
        yield MEMO
    finally:
        registry.remove("kind", "memo")


def campaign(tmp_path, suite, strategy: str, meta_reply=None, iterations: int = 2):
    archive = Archive(tmp_path / f"{strategy}.db")
    config = SearchConfig(suite=suite, kind="memo", strategy=strategy, iterations=iterations, subset=2, full=4,
                          confirm=False)  # fmt: skip
    meta = get_model("mock", outputs=meta_reply) if meta_reply else get_model("mock")
    camp = Campaign(config, archive, model=get_model("mock", outputs=careful_task), meta_model=meta)
    camp.run()
    return archive.candidates(campaign=camp.record.id)


def test_a_registered_kind_with_a_slot_is_searched_by_prompt(memo, tmp_path):
    suite = write_suite(tmp_path)
    seed, child = campaign(tmp_path, suite, "prompt", reflector(f"Be {MAGIC}, then add."), iterations=1)
    assert seed.name == "plain memo" and seed.fitness == 0.0  # the task model errs without the word
    assert child.kind == "memo" and child.parent_ids == [seed.id] and child.status == "ok"
    assert json.loads(child.source) == {"instruction": f"Be {MAGIC}, then add."}
    assert child.fitness == 1.0 and "reflect[memo]" in child.name


def test_a_registered_kind_with_a_slot_is_searched_by_bayes(memo, tmp_path):
    suite = write_suite(tmp_path)
    cands = campaign(tmp_path, suite, "bayes", iterations=3)
    seed, trials = cands[0], cands[1:]
    assert len(trials) == 3 and all(c.kind == "memo" and c.parent_ids == [seed.id] for c in trials)
    for c in trials:  # only the instruction is settable: the other parameters stay the seed's own
        assert json.loads(c.source)["instruction"] in INSTRUCTIONS
        assert c.name.startswith("bayes (instruction ") and "demos" not in c.name and "role" not in c.name
    assert len({c.source for c in trials}) == 3  # TPE never proposes a known candidate again


def test_set_slot_refuses_what_a_slot_cannot_take(memo):
    spec = MEMO.seeds()[0]
    assert slots_of(spec)[0].prompt == "{input}\n\nSolve it."
    assert json.loads(set_slot(spec, 0, instruction="Go.").source) == {"instruction": "Go."}
    with pytest.raises(InvalidAgentError, match="slot 'memo' cannot set role"):
        set_slot(spec, 0, role="critic")
    with pytest.raises(InvalidAgentError, match="has no slot 3"):
        set_slot(spec, 3, instruction="Go.")
    code = AgentSpec(kind="code", name="c", source="def forward(self, taskInfo):\n    return 1\n")
    with pytest.raises(InvalidAgentError, match="kind 'code' has no slots"):
        set_slot(code, 0, instruction="Go.")


def _shout(spec, rng, ctx):
    """Every llm node's prompt in capitals (a plugin's operator)."""
    nodes = [n.model_dump() for n in spec.nodes]
    hit = [n for n in nodes if n["type"] == "llm" and n["prompt"] != n["prompt"].upper()]
    if not hit:
        raise NotApplicable("nothing left to shout")
    for n in hit:
        n["prompt"] = n["prompt"].upper().replace("{INPUT}", "{input}").replace("{LAST}", "{last}")
    return parse_spec({**spec.model_dump(), "nodes": nodes})


@pytest.fixture
def shout():
    register_operator("shout", _shout)
    try:
        yield
    finally:
        registry.remove("operator", "shout")


@pytest.mark.parametrize("strategy", [RandomSearch(), EvolveSearch(llm_rate=0.0)], ids=["random", "evolve"])
def test_a_registered_operator_is_drawn_with_the_builtins(shout, strategy):
    seeds = seed_candidates()
    made = []
    for i in range(60):
        proposal = strategy.propose(ctx_for(seeds, iteration=i))
        made.append(proposal.raw["operators"])
        if proposal.raw["operators"] == ["shout"]:
            graph = parse_spec(proposal.spec.source)
            assert any("THINK" in n.prompt or "WRITE" in n.prompt for n in graph.nodes if n.type == "llm")
            break
    else:
        pytest.fail(f"'shout' was never drawn in 60 proposals: {made}")


def test_an_operator_must_be_a_function_of_a_known_group():
    from agentmeta.errors import ConfigError

    with pytest.raises(ConfigError, match="operator group must be one of mutation, model, crossover"):
        register_operator("bad", _shout, group="sideways")  # type: ignore[arg-type]
    assert not registry.has("operator", "bad")
    with pytest.raises(ConfigError, match="graph operator 'swap_node' is already registered"):
        register_operator("swap_node", _shout)


def kind_names_in(source: str, names: set[str]) -> list[str]:
    """Comparisons with a kind and `kind=` arguments that use one of `names` as a literal."""
    found = []
    for node in ast.walk(ast.parse(source)):
        consts: list[ast.AST] = []
        if isinstance(node, ast.Compare) and "kind" in ast.unparse(node):
            consts = [node.left, *node.comparators]
        elif isinstance(node, ast.keyword) and node.arg == "kind":
            consts = [node.value]
        if any(isinstance(sub, ast.Constant) and sub.value in names for c in consts for sub in ast.walk(c)):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_strategy_module_names_a_kind():
    names = set(kind_names())
    planted = 'if config.kind not in ("graph", "prompt"): pass\nAgentSpec(kind="graph", name="x", source="")'
    assert len(kind_names_in(planted, names)) == 2  # the scan sees both forms
    files = sorted(SEARCH.glob("*.py"))
    assert len(files) > 10
    found = [f"{p.name}:{hit}" for p in files for hit in kind_names_in(p.read_text(), names)]
    assert not found, found
