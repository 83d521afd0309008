"""Graph agents: demonstrations on llm/sample nodes, program-of-thought, the meta-agent's new steps."""

from __future__ import annotations

import json

import pytest

from agentmeta import get_model
from agentmeta.agents import GraphAgent, find_seed, parse_spec
from agentmeta.agents.graph import DEMO_K, POT_CODE, spec_from_steps
from agentmeta.agents.kinds import GRAPH, GRAPH_STEP_TYPES, proposal_demos
from agentmeta.errors import InvalidAgentError
from agentmeta.prompts import load_template


@pytest.fixture(scope="module")
def tool():
    namespace: dict = {}
    exec(POT_CODE, namespace)  # our own fixed evaluator, in-process here; candidates run it in the sandbox
    return namespace["tool"]


@pytest.mark.parametrize(
    "text,answer",
    [
        ("Expression: (3 + 4) * 2", "14"),
        ("**Expression:** 2^10", "1024"),
        ("x = 7 / 2", "3.5"),
        ("```python\nprint(sqrt(16) + 1)\n```", "5"),
        ("Expression: math.gcd(12, 18) + factorial(4)", "30"),
        ("Expression: 0.1 + 0.2", "0.3"),
        ("Expression: max([3, 9, 4]) - min(2, 5)", "7"),
        ("Expression: round(10 / 3, 2)", "3.33"),
        ("Reasoning...\nAnswer: 12 * 12", "144"),
        ("Expression: 5 > 3", "True"),
    ],
)
def test_pot_evaluator_answers(tool, text, answer):
    assert tool("", text) == f"Answer: {answer}"


@pytest.mark.parametrize(
    "text,reason",
    [
        ("Expression: __import__('os').system('id')", "function not allowed"),
        ("Expression: open('/etc/passwd').read()", "function not allowed"),
        ("Expression: (1).__class__", "Attribute is not allowed"),
        ("Expression: ().__class__.__bases__[0].__subclasses__()", "not allowed"),
        ("Expression: [x for x in range(10)]", "ListComp is not allowed"),
        ("Expression: (lambda: 1)()", "function not allowed"),
        ("Expression: globals()", "function not allowed"),
        ("Expression: x + 1", "Name is not allowed"),
        ("Expression: 'a' * 10", "only numbers"),
        ("Expression: 9 ** 9 ** 9", "power too large"),
        ("Expression: pow(2, 10 ** 9)", "power too large"),
        ("Expression: factorial(10 ** 6)", "too large"),
        ("Expression: 1 / 0", "ZeroDivisionError"),
        ("Expression: [1, 2]", "one number"),
        ("Expression: 1 +", "SyntaxError"),
        ("Expression: " + "(" * 300 + "1" + ")" * 300, "Error"),
    ],
)
def test_pot_evaluator_rejects_anything_but_arithmetic(tool, text, reason):
    out = tool("", text)
    assert out.startswith("Error: ") and reason in out, out


def test_demos_only_on_calling_nodes_and_default_free_sources():
    with pytest.raises(InvalidAgentError, match="demos apply to llm and sample nodes"):
        parse_spec({"nodes": [{"id": "a"}, {"id": "r", "type": "reflect", "demos": [{"input": "q", "answer": "1"}]}]})
    seed = find_seed("graph/cot")
    assert "demos" not in GraphAgent.from_source(seed.source).source  # an empty list is not written


def test_sample_node_shows_demos_and_answer_lines_are_kept():
    spec = parse_spec({"nodes": [
        {"id": "s", "type": "sample", "n": 3, "prompt": "Q: {input}", "demos": [
            {"input": "1+1?", "answer": "2"}, {"input": "2+2?", "answer": "2 plus 2.\nAnswer: 4"}]},
        {"id": "v", "type": "vote"}]})  # fmt: skip
    model = get_model("mock", outputs=lambda r: "Answer: 7")
    assert GraphAgent(spec).run("3+4?", model) == "7"
    [req] = model.provider.requests
    assert [(m.role, m.content) for m in req.messages[1:]] == [
        ("user", "Q: 1+1?"),
        ("assistant", "Answer: 2"),
        ("user", "Q: 2+2?"),
        ("assistant", "2 plus 2.\nAnswer: 4"),
        ("user", "Q: 3+4?"),
    ]
    assert req.n == 3


def test_new_steps_build_program_of_thought_and_demos():
    pool = [{"input": f"q{i}", "answer": str(i)} for i in range(5)]
    steps = [
        {"type": "demos", "role": "teacher", "instruction": "Solve."},
        {"type": "program_of_thought", "role": "coder", "instruction": "Use {braces}."},
        {"type": "demos", "role": "teacher", "instruction": "Check."},
    ]
    spec = spec_from_steps("x", "t", steps, demos_pool=pool)
    assert [n.type for n in spec.nodes] == ["llm", "llm", "python", "llm"]
    assert [d.input for d in spec.nodes[0].demos] == ["q0", "q1", "q2"][:DEMO_K]
    assert [d.input for d in spec.nodes[3].demos] == ["q3", "q4"]  # what is left of the pool
    assert spec.nodes[2].code == POT_CODE and "{last}" in spec.nodes[1].prompt
    assert "Expression:" in spec.nodes[1].prompt and "(braces)" in spec.nodes[1].prompt
    assert spec_from_steps("x", "t", steps).nodes[0].demos == []  # no pool, no examples


def test_graph_proposal_schema_and_prompt_list_the_same_step_types():
    enum = GRAPH.proposal_schema["properties"]["steps"]["items"]["properties"]["type"]["enum"]
    assert enum == list(GRAPH_STEP_TYPES) and {"program_of_thought", "demos"} <= set(enum)
    prompt = load_template("meta-agent-graph")
    for step in GRAPH_STEP_TYPES:
        assert f'"{step}"' in prompt, step
    reply = {"thought": "t", "name": "n", "steps": [{"type": "demos", "role": "r", "instruction": "i"}]}
    with proposal_demos([{"input": "What is 1 + 1?", "answer": "2"}]):
        spec = GRAPH.from_proposal(reply)
    assert json.loads(spec.source)["nodes"][0]["demos"] == [{"input": "What is 1 + 1?", "answer": "2"}]
    assert "demos" not in json.loads(GRAPH.from_proposal(reply).source)["nodes"][0]
