"""The `prompt` strategy (GEPA-style reflective instruction evolution) and `--objective pareto`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentmeta import get_model
from agentmeta.agents import parse_spec, seed_agents
from agentmeta.archive import Archive, Candidate
from agentmeta.errors import ConfigError
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.evolve import EvolveSearch
from agentmeta.search.reflective import (
    ReflectivePromptSearch,
    clean_instruction,
    instruction_of,
    merge_programs,
    per_sample_front,
    program_of,
    with_instruction,
)
from agentmeta.search.strategy import ProposalContext

MAGIC = "carefully"
"""The mock task model answers right only when its prompt contains this word."""


def careful_task(req) -> str:
    text = " ".join(m.content for m in req.messages)
    nums = re.findall(r"What is (\d+) \+ (\d+)", text)
    if not nums:
        return "Answer: 0"
    a, b = map(int, nums[-1])
    return f"Answer: {a + b if MAGIC in text else a + b + 1}"


def reflector(instruction: str):
    prompts: list[str] = []

    def reply(req) -> str:
        prompts.append(req.messages[-1].content)
        return f"Here is my instruction:\n```\n{instruction}\n```"

    reply.prompts = prompts  # type: ignore[attr-defined]
    return reply


def write_suite(tmp_path: Path) -> str:
    rows = []
    for i in range(24):
        split = "train" if i < 8 else "validation" if i < 16 else "test"
        rows.append({"input": f"What is {i} + {i + 3}?", "target": str(2 * i + 3), "split": split})
    path = tmp_path / "adds.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"{path}?scorer=numeric"


def run(tmp_path, suite, meta_reply, iterations=2, db="a.db", **kw):
    archive = Archive(tmp_path / db)
    config = SearchConfig(suite=suite, kind=kw.pop("kind", "graph"), strategy="prompt", iterations=iterations,
                          subset=2, full=4, seeds=kw.pop("seeds", ["cot"]), confirm=False, **kw)  # fmt: skip
    task = get_model("mock", outputs=careful_task)
    meta = get_model("mock", outputs=meta_reply)
    camp = Campaign(config, archive, model=task, meta_model=meta)
    camp.run()
    return archive, camp, archive.candidates(campaign=camp.record.id), task


# ----------------------------------------------------------------------------- pieces


def test_per_sample_front_weights_by_samples_won_and_drops_dominated():
    scores = {
        "a": {"1": 1, "2": 1, "3": 0, "4": 0},
        "b": {"1": 1, "2": 0, "3": 0, "4": 0},  # wins only where a also wins: dominated
        "c": {"1": 0, "2": 0, "3": 1, "4": 0},
    }
    assert per_sample_front(scores) == {"a": 2, "c": 1}
    assert per_sample_front({"a": {"1": 0}, "b": {"1": 0}}) == {}  # nothing solved: no front


def prog(pid, spec, fitness, parents=(), kind="graph"):
    """A `Program` of a graph (or a prompt spec's JSON with kind='prompt')."""
    source = spec if isinstance(spec, str) else spec.model_dump_json()
    cand = SimpleNamespace(id=pid, name=pid, kind=kind, thought="", source=source, fitness=fitness,
                           parent_ids=list(parents))  # fmt: skip
    return program_of(cand)


def test_instructions_are_read_rewritten_and_cleaned():
    cot = parse_spec(next(s for s in seed_agents("graph") if s.name.startswith("Chain")).source)
    program = prog("p", cot, 0.3)
    assert instruction_of(program.text(0)).startswith("Think step by step")
    child = parse_spec(with_instruction(program, 0, "Add the numbers carefully.").source)
    assert "{input}" in child.nodes[0].prompt and "Add the numbers carefully." in child.nodes[0].prompt
    assert child.nodes[0].prompt.rstrip().endswith("'Answer: <your answer>'.")
    assert clean_instruction("blah\n```text\nDo {x} well.\n```\nmore") == "Do (x) well."
    assert clean_instruction("```\nUnclosed block here") == "Unclosed block here"
    assert clean_instruction("Just text.") == "Just text."


def test_merge_takes_each_module_from_the_lineage_that_changed_it():
    steps = {
        "nodes": [
            {"id": "a", "type": "llm", "prompt": "{input} A0"},
            {"id": "b", "type": "llm", "prompt": "{last} B0"},
        ]
    }
    anc = prog("o", parse_spec(steps), 0.2)
    left = with_instruction(anc, 0, "left change").source
    right = with_instruction(anc, 1, "right change").source
    pl, pr = prog("l", left, 0.3, ("o",)), prog("r", right, 0.4, ("o",))
    merged = merge_programs(pl, pr, anc)
    assert merged is not None
    nodes = parse_spec(merged.source).nodes
    assert "left change" in nodes[0].prompt and "right change" in nodes[1].prompt
    assert merge_programs(pl, pl, anc) is None  # nothing to combine
    # a prompt agent has one module: a merge could only equal a parent; other kinds do not merge
    base = json.dumps({"template": "{input}\n\nA0"})
    p0, p1 = (
        prog("o", base, 0.2, kind="prompt"),
        prog("l", base.replace("A0", "A1"), 0.3, ("o",), kind="prompt"),
    )
    p2 = prog("r", base, 0.4, ("o",), kind="prompt")
    assert merge_programs(p2, p1, p0) is None
    assert merge_programs(pl, p1, anc) is None


# ----------------------------------------------------------------------------- campaigns


def test_a_rewrite_that_beats_its_parent_on_a_train_minibatch_is_kept(tmp_path):
    suite = write_suite(tmp_path)
    meta = reflector("Add the two numbers carefully.")
    archive, camp, cands, task = run(tmp_path, suite, meta, iterations=1)
    seed, child = cands
    assert child.parent_ids == [seed.id] and child.status == "ok"
    assert "Add the two numbers carefully." in parse_spec(child.source).nodes[0].prompt
    assert (
        child.thought.startswith("prompt: reflective rewrite")
        and "Train minibatch: 3/3 vs the parent's 0/3" in child.thought
    )
    assert child.fitness == 1.0 and seed.fitness == 0.0
    # the reflection saw train items with the scorer's feedback (train targets), never validation ones
    shown = meta.prompts[0]  # type: ignore[attr-defined]
    assert "Wrong. The expected answer is" in shown and "Think step by step" in shown
    train_inputs = {f"What is {i} + {i + 3}?" for i in range(8)}
    assert sum(q in shown for q in train_inputs) == 3
    assert not any(f"What is {i} + {i + 3}?" in shown for i in range(8, 24))


def test_a_rewrite_that_does_not_beat_its_parent_is_not_evaluated(tmp_path):
    suite = write_suite(tmp_path)
    archive, camp, cands, task = run(tmp_path, suite, reflector("Add the numbers."), iterations=1)
    seed, nothing = cands
    assert nothing.status == "invalid" and nothing.name == "no-proposal-0"
    assert "no mutation beat its parent on a train minibatch in 3 tries" in nothing.error
    assert archive.get_evaluation(nothing.id, suite, "validation", "subset") is None
    # every prompt the task model saw for the rewrites came from train samples
    validation = {f"What is {i} + {i + 3}?" for i in range(8, 24)}
    rewritten = [r for r in task.provider.requests if "Add the numbers." in r.messages[-1].content]
    assert rewritten and not any(q in r.messages[-1].content for r in rewritten for q in validation)


def half_or_demos(req) -> str:
    """Right on even first operands, and on everything once the prompt carries demonstrations."""
    text = " ".join(m.content for m in req.messages)
    a, b = map(int, re.findall(r"What is (\d+) \+ (\d+)", text)[-1])
    shown = any(m.role == "assistant" for m in req.messages)
    return f"Worked it out.\nAnswer: {a + b if shown or a % 2 == 0 else a + b + 1}"


def test_bootstrapped_demonstrations_are_the_nodes_own_solved_outputs(tmp_path):
    suite = write_suite(tmp_path)
    archive = Archive(tmp_path / "b.db")
    config = SearchConfig(suite=suite, kind="graph", strategy="prompt", iterations=1, subset=2, full=4,
                          seeds=["cot"], confirm=False)  # fmt: skip
    strategy = ReflectivePromptSearch(bootstrap_rate=1.0, merge_rate=0.0)
    camp = Campaign(config, archive, model=get_model("mock", outputs=half_or_demos),
                    meta_model=get_model("mock", outputs=reflector("unused")), strategy=strategy)  # fmt: skip
    camp.run()
    seed, child = archive.candidates(campaign=camp.record.id)
    assert child.status == "ok" and child.parent_ids == [seed.id], child.error
    assert child.name.startswith("bootstrap[node think]")
    node = parse_spec(child.source).nodes[0]
    assert node.demos and all(d.verbatim for d in node.demos)
    train = {f"What is {i} + {i + 3}?": i for i in range(8)}
    for d in node.demos:  # solved train samples (even first operand), the node's own output, verbatim
        assert train[d.input] % 2 == 0 and d.answer == f"Worked it out.\nAnswer: {2 * train[d.input] + 3}"
    raw_minibatch = set(child.metadata.get("proposal", {}).get("minibatch", [])) if child.metadata else set()
    assert not raw_minibatch & {d.input for d in node.demos}
    assert child.fitness == 1.0 and seed.fitness < 1.0


def test_prompt_kind_and_resume(tmp_path):
    suite = write_suite(tmp_path)
    meta = reflector("Add the two numbers carefully.")
    archive, camp, cands, task = run(tmp_path, suite, meta, iterations=1, kind="prompt", seeds=["cot"])
    assert [c.status for c in cands] == ["ok", "ok"]
    assert MAGIC in json.loads(cands[1].source)["template"]
    calls = len(task.provider.requests)
    again = Campaign(camp.config, archive, model=task, meta_model=get_model("mock", outputs=meta))
    again.run()
    assert len(task.provider.requests) == calls  # resumed: nothing evaluated twice


def test_strategy_refuses_what_it_cannot_do(tmp_path):
    suite = write_suite(tmp_path)
    with pytest.raises(ConfigError, match="strategy 'prompt' .* needs a kind with slots"):
        Campaign(SearchConfig(suite=suite, kind="code", strategy="prompt"), Archive(tmp_path / "x.db"),
                 model=get_model("mock"))  # fmt: skip
    no_train = tmp_path / "v.jsonl"
    no_train.write_text(
        "".join(json.dumps({"input": f"q{i}", "target": "1", "split": "validation"}) + "\n" for i in range(6))
    )
    with pytest.raises(ConfigError, match="train-split"):
        run(tmp_path, str(no_train), reflector("x"), db="y.db")


def test_strategies_may_run_candidates_on_train_samples_only(tmp_path):
    suite = write_suite(tmp_path)
    config = SearchConfig(suite=suite, kind="graph", strategy="prompt", subset=2, full=4)
    camp = Campaign(config, Archive(tmp_path / "a.db"), model=get_model("mock", outputs=careful_task))
    spec = seed_agents("graph")[0]
    assert camp.evaluate_train(spec, camp.train_suite.samples[:2]).n == 2
    with pytest.raises(ConfigError, match="train samples only"):
        camp.evaluate_train(spec, camp.full_suite.samples[:1])


# ----------------------------------------------------------------------------- objective pareto


class FakeArchive:
    """`get_evaluation` from a table {id: (mean, tokens per sample)}."""

    def __init__(self, table):
        self.table = table

    def get_evaluation(self, cid, suite, split, stage):
        mean, tok = self.table[cid]
        return SimpleNamespace(
            mean=mean, tokens_per_sample=tok, incomplete=False, score_by_id=lambda: {"s": mean}
        )


def test_objective_pareto_draws_parents_from_the_score_cost_front():
    cot = next(s for s in seed_agents("graph") if s.name.startswith("Chain"))
    table = {"cheap": (0.3, 10.0), "best": (0.5, 200.0), "worse": (0.2, 300.0)}
    cands = [Candidate(id=c, kind="graph", name=c, source=cot.source, fitness=m, fitness_stage="full", status="ok")
             for c, (m, _) in table.items()]  # fmt: skip
    ctx = ProposalContext(archive=FakeArchive(table), campaign="c", kind="graph", task_description="",  # type: ignore[arg-type]
                          iteration=0, seed=0, meta_model=get_model("mock"), candidates=cands, suite="s")  # fmt: skip
    assert set(EvolveSearch().weights(ctx)) == {"cheap", "best", "worse"}
    ctx.objective = "pareto"
    assert set(EvolveSearch().weights(ctx)) == {"cheap", "best"}
    assert SearchConfig(suite="x", objective="pareto").identity()["objective"] == "pareto"
    with pytest.raises(ValueError):
        SearchConfig(suite="x", objective="cheapest")


@pytest.mark.embedded
def test_reflection_on_the_embedded_model(embedded, tmp_path):
    """One reflective iteration on the real model: the seed runs on a train minibatch, the real model
    writes an instruction from the feedback, and the child is kept only if it beats the seed there."""
    from agentmeta.search.strategy import NoNewCandidateError

    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    archive = Archive(tmp_path / "e.db")
    config = SearchConfig(suite=suite, kind="graph", strategy="prompt", seeds=["cot"], iterations=0, subset=2,
                          full=2, confirm=False)  # fmt: skip
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    camp.run()  # the seed's stages: the parent needs a score
    strategy = ReflectivePromptSearch(minibatch=2, max_tries=1, merge_rate=0.0, reflection_tokens=96)
    before = embedded.usage.calls
    try:
        proposal = strategy.propose(camp._context(0))
    except NoNewCandidateError as e:  # the rewrite did not beat the seed on its minibatch, or solved it
        assert re.search(
            r"scored [\d.]+/2 vs [\d.]+/2|solved its minibatch|gave no instruction|duplicated|nothing to bootstrap",
            str(e),
        ), e
    else:
        raw = proposal.raw
        assert raw["child_minibatch"] > raw["parent_minibatch"]
        assert set(raw["minibatch"]) <= {s.id for s in camp.train_suite.samples}
        assert clean_instruction(raw["instruction"]) == raw["instruction"]
        assert raw["instruction"] in parse_spec(proposal.spec.source).nodes[0].prompt
    assert embedded.usage.calls > before  # the real model ran the minibatch and wrote the reflection


def test_bootstrap_takes_solved_train_samples_outside_the_excluded_ones():
    import random

    from agentmeta.eval import Sample
    from agentmeta.search.bootstrap import bootstrap_demos, bootstrap_targets
    from agentmeta.search.operators import NotApplicable

    train = [Sample(id=f"t{i}", input=f"What is {i} + 1?", target=str(i + 1)) for i in range(10)]

    def evaluate(spec, samples):  # solves the odd ones
        recs = [SimpleNamespace(id=s.id, score=float(int(s.id[1:]) % 2), outcome="scored") for s in samples]
        return SimpleNamespace(records=recs)

    ctx = SimpleNamespace(kind="graph", train_samples=train, evaluate=evaluate,
                          trace=lambda spec, s: {"write": f"Expression: {s.id[1:]} + 1"})  # fmt: skip
    pot = parse_spec(next(s for s in seed_agents("graph") if s.name.startswith("Program")).source)
    assert bootstrap_targets(pot) == [0]  # the expression node, not the calculator
    child, info = bootstrap_demos(ctx, pot, 0, random.Random(0), exclude={"t1", "t3"}, pool=10)
    demos = child.nodes[0].demos
    assert demos and all(d.verbatim and d.reply() == d.answer for d in demos)
    assert {d.input for d in demos} <= {f"What is {i} + 1?" for i in (5, 7, 9)}
    assert info["solved"] == len(demos) <= 3
    ctx.evaluate = lambda spec, samples: SimpleNamespace(
        records=[SimpleNamespace(id=s.id, score=0.0, outcome="scored") for s in samples]
    )
    with pytest.raises(NotApplicable, match="solved none"):
        bootstrap_demos(ctx, pot, 0, random.Random(0))
