"""Agent kinds: validation of code, graph and prompt candidates; graph semantics on the mock model."""

from __future__ import annotations

import pytest

from agentmeta import get_model
from agentmeta.agents import (
    AgentSpec,
    GraphAgent,
    PromptAgent,
    check_code,
    extract_answer,
    find_seed,
    seed_agents,
    spec_from_file,
)
from agentmeta.agents.graph import spec_from_steps
from agentmeta.errors import ConfigError, InvalidAgentError


def test_seed_archive_has_the_hand_designed_agents():
    names = {s.name for s in seed_agents("code")}
    for expected in (
        "Chain-of-Thought",
        "Self-Consistency with Chain-of-Thought",
        "Self-Refine (Reflexion)",
        "LLM Debate",
        "Step-back Abstraction",
        "Quality-Diversity",
        "Dynamic Assignment of Roles",
    ):
        assert expected in names
    graphs = {s.name for s in seed_agents("graph")}
    assert {"Self-Consistency (graph)", "Self-Refine (graph)"} <= graphs
    for s in seed_agents("code"):
        check_code(s.source)
    for s in seed_agents("graph") + seed_agents("prompt"):
        s.build()


@pytest.mark.parametrize(
    "source,needle",
    [
        ("", "empty"),
        ("def forward(self, taskInfo)\n    return 1", "syntax error"),
        ("def solve(x):\n    return 1", "no top-level function forward"),
        ("def forward(taskInfo):\n    return 1", "exactly (self, taskInfo)"),
    ],
)
def test_invalid_code_is_rejected_with_reason(source, needle):
    with pytest.raises(InvalidAgentError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        check_code(source)


def test_extract_answer():
    assert extract_answer("blah\nAnswer: 42") == "42"
    assert extract_answer("Answer: 1\nmore\nFinal answer: **7**") == "7"
    assert extract_answer("  just text ") == "just text"


def test_graph_sample_vote_takes_majority():
    answers = iter(["Answer: 5", "Answer: 6", "Answer: 5", "Answer: 5 ", "Answer: 7"])

    model = get_model("mock", outputs=lambda r: next(answers))
    agent = find_seed("graph/self_consistency").build()
    assert agent.run("2+3?", model) == "5"


def test_graph_conditional_edges_and_loops_stop():
    spec = {
        "name": "router",
        "nodes": [
            {"id": "classify", "prompt": "Is this math? {input}"},
            {"id": "math", "prompt": "Solve: {input}"},
            {"id": "other", "prompt": "Answer: {input}"},
        ],
        "edges": [
            {"source": "classify", "target": "math", "when": "yes"},
            {"source": "classify", "target": "other", "when": "not:yes"},
            {"source": "math", "target": "END"},
            {"source": "other", "target": "END"},
        ],
        "output": None,
    }

    def reply(req):
        text = req.messages[-1].content
        if text.startswith("Is this math?"):
            return "yes" if "2+2" in text else "no"
        return "Answer: math" if text.startswith("Solve") else "Answer: other"

    m = get_model("mock", outputs=reply)
    spec_math = dict(spec, output="math")
    assert GraphAgent.from_source(spec_math).run("2+2", m) == "math"
    spec_other = dict(spec, output="other")
    assert GraphAgent.from_source(spec_other).run("poem", m) == "other"


def test_graph_cycle_hits_max_steps():
    spec = {
        "nodes": [{"id": "a", "prompt": "{input}"}],
        "edges": [{"source": "a", "target": "a"}],
        "max_steps": 3,
    }
    with pytest.raises(InvalidAgentError, match="max_steps"):
        GraphAgent.from_source(spec).run("x", get_model("mock", outputs=lambda r: "again"))


@pytest.mark.parametrize(
    "spec,needle",
    [
        ({"nodes": []}, "nodes"),
        ({"nodes": [{"id": "a"}, {"id": "a"}]}, "unique"),
        ({"nodes": [{"id": "a", "prompt": "{nope}"}]}, "unknown variable"),
        ({"nodes": [{"id": "a"}, {"id": "v", "type": "vote"}]}, "sample node"),
        ({"nodes": [{"id": "a"}], "edges": [{"source": "a", "target": "b"}]}, "unknown node"),
        ("nodes: [unclosed", "not valid JSON/YAML"),
    ],
)
def test_invalid_graph_specs(spec, needle):
    with pytest.raises(InvalidAgentError, match=needle):
        GraphAgent.from_source(spec)


def test_steps_always_give_a_valid_graph():
    spec = spec_from_steps(
        "x",
        "t",
        [
            {"type": "sample_vote", "role": "r", "instruction": "use {braces}"},
            {"type": "reflect", "role": "critic", "instruction": "check"},
            {"type": "llm", "role": "r", "instruction": ""},
        ],
    )
    types = [n.type for n in spec.nodes]
    assert types == ["sample", "vote", "reflect", "llm"]
    m = get_model("mock", outputs=lambda r: "OK Answer: 3")
    assert GraphAgent(spec).run("q", m) == "3"


def test_prompt_agent_requires_input_slot():
    with pytest.raises(InvalidAgentError, match="input"):
        PromptAgent.from_source('{"template": "no slot"}')
    agent = PromptAgent.from_source('{"system": "S", "template": "Q: {input}"}')
    m = get_model("mock", outputs=lambda r: f"Answer: {r.messages[1].content}")
    assert agent.run("hi", m) == "Q: hi"


def test_agent_files_and_export(tmp_path):
    py = tmp_path / "mine.py"
    py.write_text("# name: Mine\n# thought: t\ndef forward(self, taskInfo):\n    return 'x'\n")
    spec = spec_from_file(py)
    assert spec.kind == "code" and spec.name == "Mine"
    out = spec.export(tmp_path / "out")
    assert (out / "agent.py").read_text() == py.read_text()
    yml = tmp_path / "g.yaml"
    yml.write_text("name: G\nnodes:\n  - id: a\n")
    assert spec_from_file(yml).kind == "graph"
    with pytest.raises(ConfigError, match="does not exist"):
        spec_from_file(tmp_path / "nope.py")
    bad = tmp_path / "bad.yaml"
    bad.write_text("foo: 1\n")
    with pytest.raises(InvalidAgentError, match="not an agent spec"):
        spec_from_file(bad)


def test_conductor_spec_is_an_agent_kind():
    spec = AgentSpec(kind="conductor", name="c", source='{"max_rounds": 2}')
    agent = spec.build()
    q3 = '"""'
    m = get_model("mock", outputs=lambda r: f">> FINAL ANSWER: {q3}Answer: 12{q3}")
    assert agent.run("x", m) == "12"
    with pytest.raises(InvalidAgentError):
        AgentSpec(kind="conductor", name="c", source='{"max_rounds": 0}').build()
