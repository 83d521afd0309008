"""The evolve and random strategies: parent selection, the operator library, duplicates, campaigns."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from agentmeta import get_model
from agentmeta.agents import AgentSpec, parse_spec, seed_agents
from agentmeta.agents.graph import POT_CODE, GraphSpec, spec_from_steps
from agentmeta.archive import Archive, Candidate
from agentmeta.errors import ConfigError
from agentmeta.eval import Sample
from agentmeta.search import Campaign, SearchConfig
from agentmeta.search.bootstrap import BOOTSTRAP
from agentmeta.search.evolve import (
    LLM_REWRITE,
    EvolveSearch,
    NoNewCandidateError,
    parent_weights,
    sigmoid,
)
from agentmeta.search.meta_agent import MetaAgentSearch
from agentmeta.search.operators import (
    BUILTIN_OPERATORS,
    CROSSOVERS,
    NotApplicable,
    OperatorContext,
    apply,
    canonical,
)
from agentmeta.search.random_search import RandomSearch
from agentmeta.search.strategies import get_strategy
from agentmeta.search.strategy import ProposalContext
from tests.search.conftest import graph_meta_reply, task_reply

TRAIN = [Sample(id=f"t{i}", input=f"What is {i} + {i + 10}?", target=str(2 * i + 10)) for i in range(6)]
VALIDATION_INPUTS = {f"What is {a} + {b}?" for a, b in [(1, 2), (3, 4), (5, 6)]}


def seeds() -> dict[str, GraphSpec]:
    return {s.name: parse_spec(s.source) for s in seed_agents("graph")}


def rich_graph() -> GraphSpec:
    """Every node type and demonstrations: what operators must handle besides the seeds."""
    spec = spec_from_steps(
        "rich",
        "",
        [
            {"type": "demos", "role": "teacher", "instruction": "Add."},
            {"type": "sample_vote", "role": "r", "instruction": "Check."},
            {"type": "program_of_thought", "role": "coder", "instruction": ""},
            {"type": "reflect", "role": "critic", "instruction": ""},
        ],
        demos_pool=[{"input": s.input, "answer": s.target} for s in TRAIN],
    )
    assert [n.type for n in spec.nodes] == ["llm", "sample", "vote", "llm", "python", "reflect"]
    return spec


def cand(
    cid: str, fitness: float | None, stage: str | None = "full", status: str = "ok", parents=()
) -> Candidate:
    source = seeds()["Chain-of-Thought (graph)"].model_dump_json()
    return Candidate(id=cid, kind="graph", name=cid, source=source, fitness=fitness, fitness_stage=stage,
                     status=status, parent_ids=list(parents))  # fmt: skip


def ctx_for(candidates, iteration: int = 0, seed: int = 0, meta=None, train=()) -> ProposalContext:
    return ProposalContext(
        archive=None,  # type: ignore[arg-type]
        campaign="c",
        kind="graph",
        task_description="Add two numbers.",
        iteration=iteration,
        seed=seed,
        meta_model=meta or get_model("mock"),
        candidates=list(candidates),
        train_samples=list(train),
    )


def seed_candidates() -> list[Candidate]:
    out = []
    for i, (name, spec) in enumerate(seeds().items()):
        out.append(Candidate(id=f"seed{i}", kind="graph", name=name, source=spec.model_dump_json(),
                             fitness=0.5 + 0.1 * i, fitness_stage="full", status="ok"))  # fmt: skip
    return out


# ----------------------------------------------------------------------------- parent selection


def test_parent_weights_are_sigmoid_of_score_times_inverse_children():
    cands = [
        cand("a", 0.9),
        cand("b", 0.5),
        cand("c", 0.2),
        cand("d", 0.9),
        cand("sub", 0.99, stage="subset"),  # a subset score only, while others have full-stage ones
        cand("bad", 0.99, status="error"),
        cand("child1", None, status="invalid", parents=["a"]),
        cand("child2", None, status="invalid", parents=["a", "b"]),
        cand("child3", None, status="invalid", parents=["a"]),
    ]
    w = parent_weights(cands)
    assert set(w) == {"a", "b", "c", "d"}
    assert w["a"] == pytest.approx(sigmoid(10 * (0.9 - 0.5)) / 4)
    assert w["b"] == pytest.approx(0.5 / 2)
    assert w["c"] == pytest.approx(sigmoid(10 * (0.2 - 0.5)))
    assert w["d"] == pytest.approx(sigmoid(4.0))
    assert w["d"] == pytest.approx(4 * w["a"])  # same score, three children fewer


def test_parents_are_drawn_in_proportion_to_their_weights():
    cands = [cand("a", 0.9), cand("b", 0.6), cand("c", 0.3), cand("x", None, status="invalid", parents=["a"])]
    strategy = EvolveSearch()
    ctx = ctx_for(cands)
    pool = strategy.parents(ctx)
    weights = parent_weights(cands)
    total = sum(weights.values())
    rng = random.Random(7)
    draws = Counter(strategy.select(pool, ctx, rng).id for _ in range(20000))
    for cid, w in weights.items():
        assert draws[cid] / 20000 == pytest.approx(w / total, abs=0.015)


def test_subset_scores_count_only_while_no_candidate_has_a_full_stage_score():
    cands = [
        cand("a", 0.2, stage="subset"),
        cand("b", 0.8, stage="subset"),
        cand("c", None, status="pending"),
    ]
    assert set(parent_weights(cands)) == {"a", "b"}
    assert set(parent_weights([*cands, cand("d", 0.1)])) == {"d"}


# ----------------------------------------------------------------------------- operators


@pytest.mark.parametrize("op", sorted(BUILTIN_OPERATORS))
def test_each_operator_makes_a_valid_graph_that_builds_and_runs(op):
    parents = {**seeds(), "rich": rich_graph()}
    model = get_model("mock", outputs=task_reply)
    applied = 0
    for pname, parent in parents.items():
        partners = [p for p in parents if p != pname] if op in CROSSOVERS else [None]
        for pcname in partners:
            ctx = OperatorContext(train_samples=TRAIN, partner=parents[pcname] if pcname else None,
                                  models=("mock",), task_model="mock")  # fmt: skip
            try:
                child = apply(op, parent, random.Random(f"{op}{pname}{pcname}"), ctx)
            except NotApplicable:
                continue
            applied += 1
            assert isinstance(child, GraphSpec) and len(child.nodes) <= ctx.max_nodes
            assert canonical(child) != canonical(parent), (op, pname, pcname)
            agent = AgentSpec(kind="graph", name="child", source=child.model_dump_json()).build()
            assert agent.run("What is 2 + 3?", model) == "5", (op, pname, pcname, child)
    assert applied, f"{op} applied to no parent"


def test_operators_are_pure_and_seeded():
    parent = rich_graph()
    before = parent.model_dump_json()
    ctx = OperatorContext(train_samples=TRAIN, partner=seeds()["Self-Refine (graph)"])
    for op in BUILTIN_OPERATORS:
        runs = []
        for _ in range(2):
            try:
                runs.append(apply(op, parent, random.Random(3), ctx).model_dump_json())
            except NotApplicable as e:
                runs.append(str(e))
        assert runs[0] == runs[1], op
    assert parent.model_dump_json() == before


def test_structural_operators_leave_graphs_with_edges_alone():
    spec = parse_spec({"nodes": [{"id": "a"}, {"id": "b"}], "edges": [{"source": "a", "target": "END"}]})
    with pytest.raises(NotApplicable, match="explicit edges"):
        apply("add_reflect", spec, random.Random(0), OperatorContext())
    child = apply("change_role", spec, random.Random(0), OperatorContext())
    assert child.edges == spec.edges


def test_program_of_thought_evaluates_the_expression_in_the_sandbox():
    spec = spec_from_steps(
        "pot", "", [{"type": "program_of_thought", "role": "coder", "instruction": "Add."}]
    )
    agent = AgentSpec(kind="graph", name="pot", source=spec.model_dump_json()).build()
    assert spec.nodes[1].code == POT_CODE
    good = get_model("mock", outputs=lambda r: "The sum times four.\nExpression: (2 + 3) * 4")
    assert agent.run("What is (2 + 3) * 4?", good) == "20"
    assert "Expression:" in good.provider.requests[0].messages[-1].content
    hostile = [
        "Expression: __import__('os').system('touch /tmp/pwned')",
        "Expression: open('/etc/passwd').read()",
        "Expression: (1).__class__.__bases__[0].__subclasses__()",
        "Expression: 9 ** 9 ** 9",
        "Expression: [x for x in range(10 ** 9)]",
    ]
    for text in hostile:
        out = agent.run("q", get_model("mock", outputs=lambda r, t=text: t))
        assert out.startswith("Error: cannot evaluate"), (text, out)


# ----------------------------------------------------------------------------- demonstrations


def test_demos_come_from_the_train_samples_given_and_are_sent_as_chat_turns():
    parent = seeds()["Chain-of-Thought (graph)"]
    child = apply("add_demos", parent, random.Random(1), OperatorContext(train_samples=TRAIN))
    [node] = child.nodes
    train = {s.input: s.target for s in TRAIN}
    assert node.demos and all(train[d.input] == d.answer for d in node.demos)
    model = get_model("mock", outputs=task_reply)
    agent = AgentSpec(kind="graph", name="d", source=child.model_dump_json()).build()
    assert agent.run("What is 2 + 3?", model) == "5"
    [req] = model.provider.requests
    roles = [m.role for m in req.messages]
    assert roles == ["system"] + ["user", "assistant"] * len(node.demos) + ["user"]
    for k, demo in enumerate(node.demos):
        assert req.messages[1 + 2 * k].content == parent.nodes[0].prompt.format(input=demo.input)
        assert req.messages[2 + 2 * k].content == f"Answer: {demo.answer}"
    assert req.messages[-1].content == parent.nodes[0].prompt.format(input="What is 2 + 3?")
    with pytest.raises(NotApplicable, match="no train samples"):
        apply("add_demos", parent, random.Random(1), OperatorContext(train_samples=()))


def test_strategies_show_train_samples_only():
    """Over many proposals, every demonstration is a train sample; validation inputs never appear."""
    cands = seed_candidates()
    shown = set()
    for strategy in (EvolveSearch(llm_rate=0.0), RandomSearch()):
        for i in range(40):
            prop = strategy.propose(ctx_for(cands, iteration=i, train=TRAIN))
            for node in parse_spec(prop.spec.source).nodes:
                shown |= {(d.input, d.answer) for d in node.demos}
    assert shown and shown <= {(s.input, s.target) for s in TRAIN}
    assert not {i for i, _ in shown} & VALIDATION_INPUTS


def test_meta_agent_demos_step_takes_train_samples():
    reply = json.dumps({"thought": "t", "name": "shown", "steps": [
        {"type": "demos", "role": "teacher", "instruction": "Add."},
        {"type": "program_of_thought", "role": "coder", "instruction": "Use the numbers."},
    ]})  # fmt: skip
    meta = get_model("mock", outputs=lambda r: reply)
    best = Candidate(id="best", kind="graph", name="Rich", source=rich_graph().model_dump_json(), fitness=0.99,
                     fitness_stage="full", status="ok")  # fmt: skip
    ctx = ctx_for([*seed_candidates(), best], meta=meta, train=TRAIN)
    prop = MetaAgentSearch(reflexion_rounds=0).propose(ctx)
    spec = parse_spec(prop.spec.source)
    assert [n.type for n in spec.nodes] == ["llm", "llm", "python"]
    assert len(spec.nodes[0].demos) == 3
    assert {(d.input, d.answer) for d in spec.nodes[0].demos} <= {(s.input, s.target) for s in TRAIN}
    prompt = meta.provider.requests[0].messages[-1].content
    assert "program_of_thought" in prompt and '"demos"' in prompt
    assert "Name: Rich" in prompt and "<program-of-thought calculator>" in prompt
    assert "def tool" not in prompt  # the calculator's code is not shown to the meta-agent


# ----------------------------------------------------------------------------- duplicates


def test_canonical_ignores_names_thoughts_and_node_ids():
    a = parse_spec({"name": "A", "thought": "x", "nodes": [
        {"id": "s", "type": "sample", "prompt": "{input}"}, {"id": "v", "type": "vote", "source": "s"},
        {"id": "c", "prompt": "{input} {s} {last}"}]})  # fmt: skip
    b = parse_spec({"name": "B", "nodes": [
        {"id": "x1", "type": "sample", "prompt": "{input}", "role": "helpful assistant"}, {"id": "y", "type": "vote"},
        {"id": "z", "prompt": "{input} {x1} {last}", "code": "ignored"}], "output": "z"})  # fmt: skip
    assert canonical(a) == canonical(b)
    c = parse_spec({"nodes": [{"id": "s", "type": "sample", "prompt": "{input}", "n": 3},
                              {"id": "v", "type": "vote"}, {"id": "c", "prompt": "{input} {s} {last}"}]})  # fmt: skip
    assert canonical(c) != canonical(a)


def test_duplicates_are_rejected_before_evaluation():
    cands = seed_candidates()
    strategy = EvolveSearch(llm_rate=0.0)
    first = strategy.propose(ctx_for(cands, iteration=3))
    # the same draw again (same weights: no parent named), that child already in the campaign as an invalid one
    known = Candidate(id="known", kind="graph", name="k", source=first.spec.source, status="invalid")
    again = strategy.propose(ctx_for([*cands, known], iteration=3))
    assert canonical(parse_spec(again.spec.source)) != canonical(parse_spec(first.spec.source))
    assert again.raw["duplicates"] >= 1


def test_strategy_gives_up_with_a_clear_error_when_every_child_is_known():
    class OnlyChangeN(EvolveSearch):
        def choose(self, pool, ctx, rng):
            return "change_n", next(p for p in pool if p.name.startswith("Self-Consistency")), None

    cands = seed_candidates()
    sc = parse_spec(next(c.source for c in cands if c.name.startswith("Self-Consistency")))
    for n in (3, 7, 9):  # every other n the operator can choose
        variant = sc.model_copy(update={"nodes": [sc.nodes[0].model_copy(update={"n": n}), sc.nodes[1]]})
        cands.append(Candidate(id=f"n{n}", kind="graph", name=f"n{n}", source=variant.model_dump_json(),
                               status="invalid"))  # fmt: skip
    with pytest.raises(NoNewCandidateError, match=r"no new graph after 6 tries \(6 children duplicated"):
        OnlyChangeN(llm_rate=0.0, max_tries=6).propose(ctx_for(cands))


# ----------------------------------------------------------------------------- campaigns


def run_campaign(tmp_path, suite_file, strategy, db="a.db", **kw):
    archive = Archive(tmp_path / db)
    config = SearchConfig(suite=suite_file, kind="graph", strategy=strategy if isinstance(strategy, str) else
                          strategy.name, iterations=4, subset=2, full=4, **kw)  # fmt: skip
    camp = Campaign(
        config,
        archive,
        model=get_model("mock", outputs=task_reply),
        meta_model=get_model("mock", outputs=graph_meta_reply([0])),
        strategy=None if isinstance(strategy, str) else strategy,
    )
    camp.run()
    return archive, camp, archive.candidates(campaign=camp.record.id)


@pytest.mark.parametrize("strategy", ["evolve", "random"])
def test_short_campaign_archives_children_with_parents_and_operators(tmp_path, suite_file, strategy):
    archive, camp, cands = run_campaign(tmp_path, suite_file, strategy)
    new = [c for c in cands if c.generation > 0]
    assert len(new) == 4 and len(cands) == 4 + len(seed_agents("graph"))
    ids = {c.id for c in cands}
    for c in new:
        assert c.status == "ok" and c.fitness is not None
        assert c.parent_ids and set(c.parent_ids) <= ids
        assert c.thought.startswith(f"{strategy}: ")
        assert any(op in c.thought for op in [*BUILTIN_OPERATORS, LLM_REWRITE, BOOTSTRAP]), c.thought
        parse_spec(c.source)
    assert len({canonical(parse_spec(c.source)) for c in cands}) == len(cands)  # no duplicate evaluated
    # the same seed proposes the same children
    _, _, again = run_campaign(tmp_path, suite_file, strategy, db="b.db")

    def shape(cs):  # ids differ between archives: parents by position
        index = {c.id: i for i, c in enumerate(cs)}
        thoughts = [c.thought.split(" [")[0] for c in cs]
        return [(c.name, t, canonical(parse_spec(c.source)), [index[p] for p in c.parent_ids])
                for c, t in zip(cs, thoughts, strict=True)]  # fmt: skip

    assert shape(again) == shape(cands)
    _, _, other = run_campaign(tmp_path, suite_file, strategy, db="c.db", seed=1)
    assert shape(other) != shape(cands)


def test_evolve_rewrites_by_the_meta_agent_with_the_parent_in_view(tmp_path, suite_file):
    strategy = EvolveSearch(llm_rate=1.0, reflexion_rounds=0)
    archive, camp, cands = run_campaign(tmp_path, suite_file, strategy)
    new = [c for c in cands if c.generation > 0]
    # replies 3 and 4 repeat the graphs of replies 1 and 2: rejected, the operators make those children
    assert [c.name for c in new[:2]] == ["pipeline-1", "pipeline-2"]
    assert all(c.thought.startswith(f"evolve: {LLM_REWRITE} of ") for c in new[:2])
    assert not any(LLM_REWRITE in c.thought for c in new[2:]) and all(
        c.thought.startswith("evolve: ") for c in new
    )
    prompts = [r.messages[-1].content for r in camp.meta_model.provider.requests]
    assert len(prompts) == 4
    by_id = {c.id: c for c in cands}
    for c, prompt in zip(new[:2], prompts, strict=False):
        [pid] = c.parent_ids
        assert f"Name: {by_id[pid].name}" in prompt.split("# The agent you build on")[1]


def test_strategies_refuse_kinds_without_the_capability_they_need(suite_file):
    for name in ("evolve", "random", "tree"):
        with pytest.raises(
            ConfigError,
            match=rf"strategy '{name}' \(it mutates graphs\) needs a kind with graph operators.*--kind code has none \(kinds with them: graph",
        ):
            get_strategy(name, SearchConfig(suite=suite_file, kind="code"))
        assert get_strategy(name, SearchConfig(suite=suite_file, kind="graph")).name == name
    for name in ("prompt", "bayes"):
        with pytest.raises(
            ConfigError,
            match=r"needs a kind with slots.*--kind code has none \(kinds with them: graph, prompt",
        ):
            get_strategy(name, SearchConfig(suite=suite_file, kind="code"))
        assert get_strategy(name, SearchConfig(suite=suite_file, kind="prompt")).name == name
    with pytest.raises(ConfigError, match="strategy 'meta-agent' needs a kind with proposals"):
        get_strategy("meta-agent", SearchConfig(suite=suite_file, kind="conductor"))


@pytest.mark.embedded
@pytest.mark.parametrize("name", ["evolve", "random"])
def test_operator_children_run_on_the_embedded_model(embedded, tmp_path, name):
    """Two evolve (or random) proposals (from the seed files: nothing is scored yet) on the real
    model, each built and run on one validation sample; the meta-model rewrite, when drawn, is the
    real model."""
    from agentmeta.eval import evaluate, load_suite
    from agentmeta.search.strategies import get_strategy
    from agentmeta.search.strategy import ProposalContext

    suite = "rg/basic_arithmetic?max_terms=2&max_digits=1&allow_parentheses=false&allow_negation=false"
    archive = Archive(tmp_path / "e.db")
    config = SearchConfig(suite=suite, kind="graph", strategy=name, iterations=0, subset=1, full=1,
                          reflexion_rounds=0, confirm=False)  # fmt: skip
    camp = Campaign(config, archive, model=embedded, meta_model=embedded)
    strategy = get_strategy(name, config)
    one = load_suite(suite, limit=1)
    for i in range(2):
        ctx = ProposalContext(
            archive=archive, campaign=camp.record.id, kind="graph", task_description=camp._task_description(),
            iteration=i, seed=0, meta_model=embedded, candidates=camp._candidates(),
            train_samples=list(camp.train_suite.samples),
        )  # fmt: skip
        proposal = strategy.propose(ctx)
        assert proposal.spec.thought.startswith(f"{name}: ") and proposal.raw.get("operators")
        result = evaluate(proposal.spec.build(), one, model=embedded, max_tokens=48)
        assert result.n == 1 and result.n_infra == 0 and result.records[0].answer is not None


def test_model_operators_apply_only_when_the_campaign_names_other_models(tmp_path, suite_file):
    from agentmeta.search.operators import MODEL_MUTATIONS, add_cascade

    plain = rich_graph()
    for op in MODEL_MUTATIONS:
        with pytest.raises(NotApplicable, match="no other model"):
            apply(op, plain, random.Random(0), OperatorContext(train_samples=TRAIN))
    cot = (
        seeds()["Chain-of-Thought (graph)"]
        if "Chain-of-Thought (graph)" in seeds()
        else next(iter(seeds().values()))
    )
    ctx = OperatorContext(
        train_samples=TRAIN, models=("mock/tests.agents.cascade_models:strong",), task_model="mock"
    )
    child = add_cascade(cot, random.Random(1), ctx)
    assert child.nodes[-1].type == "cascade" and child.nodes[-1].models == ["mock", ctx.models[0]]
    # a campaign with other models draws them; one without never does
    archive, camp, cands = run_campaign(tmp_path, suite_file, "random", models=[ctx.models[0]], seed=3)
    changed = [c for c in cands if "change_model applied" in c.thought]
    assert changed and all(c.status == "ok" for c in changed)  # seed 3 draws it (seeded)
    assert any(n.model == ctx.models[0] for c in changed for n in parse_spec(c.source).nodes)
    _, _, cands2 = run_campaign(tmp_path, suite_file, "random", db="n.db", seed=3)
    assert not any(f"{op} applied" in c.thought for c in cands2 for op in MODEL_MUTATIONS)
