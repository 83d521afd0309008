"""Graph agents: a declarative spec (JSON or YAML) compiled to a LangGraph `StateGraph`.

Nodes:
- ``llm``: one call; ``prompt`` is a template over ``{input}`` (the task), ``{last}`` (the previous
  node's output) and ``{<node id>}`` (any earlier node's output); ``role`` and ``temperature``.
  Optional ``demos`` (``[{input, answer}]``, solved examples from a suite's train split) are sent
  before the prompt as user/assistant turns: the prompt rendered with the example's input (other
  variables empty), then ``Answer: <answer>``.
- ``sample``: ``n`` calls of the prompt at ``temperature``; its output is a list of texts (``demos`` too).
  With ``models`` (model specs) the samples are spread over those models: cross-model repeated
  sampling.
- ``cascade``: ``n`` samples from the first of ``models``; if fewer than ``agree`` of them share
  the majority answer, the next model is asked, and so on (the last answers in any case); its
  output is a text with the majority answer (Language Model Cascades, a small model first).

Any calling node may name a ``model`` spec of its own; calls to another model are seeded like the
run's and their tokens counted per model (`SampleRecord.tokens_by_model`).
- ``vote``: majority vote over the answers of a ``sample`` node (``source``, default the previous).
- ``reflect``: critique the previous answer and refine it until the critic says OK, at most
  ``max_rounds`` times.
- ``python``: ``code`` defining ``tool(input, last) -> str``, run in the sandbox (which refuses,
  with `SandboxUnavailableError`, where it cannot isolate and the user did not opt in).
  Program-of-thought is an ``llm`` node asked for one Python expression (`pot_prompt`) followed by
  a ``python`` node running `POT_CODE`, a fixed evaluator that walks the expression's syntax tree
  (numbers, arithmetic, comparisons, a few math functions; nothing else) and answers
  ``Answer: <value>``.

- ``bandit`` and ``tree_search`` (`agentmeta.agents.adaptive`): a reasoning strategy chosen per input
  from ``arms`` by a bandit whose statistics are learned on the train split; AB-MCTS over answers
  (``treequest``) guided by a verifier that needs no target.

Node types are entries of the registry's "node" category (`register_node`): a plugin adds one the
same way, and `agentmeta plugins` lists them.

Edges: ``{"source": a, "target": b}``, with an optional ``when`` (a substring, case-insensitive,
that must be in ``a``'s output; prefix ``not:`` negates). Without edges, nodes form a chain in
order. The answer is the text after the last ``Answer:`` in the ``output`` node (default: last).
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from agentmeta.agents.answers import extract_answer, majority, vote_key
from agentmeta.agents.slots import Demo as Demo  # a node's demonstrations (shared with prompt agents)
from agentmeta.agents.slots import render_demo as render_demo
from agentmeta.errors import InvalidAgentError
from agentmeta.prompts import prompt_line
from agentmeta.registry import registry

if TYPE_CHECKING:
    from agentmeta.models import Model

ANSWER_HINT = prompt_line("answer-hint")


POT_CODE = (Path(__file__).with_name("pot_tool.py")).read_text()
"""The python node of program-of-thought: `tool(input, last)` reads the expression from the previous
node's output (an `Expression:` line, else a fenced code block, else an `Answer:` line, else the last
line), evaluates it by walking its syntax tree (no `eval`, no names but math constants, no attribute
access but `math.<function>`, bounded integer sizes) and returns `Answer: <value>`, or `Error: ...`
for anything else. Runs in the sandbox like any python node."""

POT_INSTRUCTION = prompt_line("pot-instruction")


def step_prompt(instruction: str = "", previous: bool = False, hint: str = ANSWER_HINT) -> str:
    """A step's prompt: the task, the previous step's output if `previous`, the instruction, the hint."""
    instruction = instruction.replace("{", "(").replace("}", ")").strip()
    return (
        "Task: {input}\n\n"
        + ("Previous step:\n{last}\n\n" if previous else "")
        + (instruction + "\n\n" if instruction else "")
        + hint
    )


def pot_prompt(instruction: str = "", previous: bool = False) -> str:
    """The prompt of program-of-thought's llm node: asks for one expression instead of an answer."""
    return step_prompt(instruction, previous, hint=POT_INSTRUCTION)


def pot_nodes(llm_id: str, python_id: str, instruction: str = "", previous: bool = False,
              role: str = "helpful assistant") -> list[dict[str, Any]]:  # fmt: skip
    """Program-of-thought as two node dicts: an llm node writing the expression, a python node
    evaluating it with `POT_CODE`."""
    return [
        {"id": llm_id, "type": "llm", "prompt": pot_prompt(instruction, previous), "role": role},
        {"id": python_id, "type": "python", "code": POT_CODE},
    ]


class Node(BaseModel):
    """One step of a graph agent."""

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the node; its output is `{<id>}` in later prompts."""
    type: str = "llm"
    """A registered node type (`register_node`): llm, sample, vote, reflect, python, cascade,
    bandit, tree_search, or a plugin's."""
    prompt: str = "{input}\n\n" + ANSWER_HINT
    """Prompt template (llm, sample, reflect's refine step)."""
    role: str = "helpful assistant"
    """Persona in the system message."""
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    """Sampling temperature."""
    n: int = Field(default=5, ge=1, le=32)
    """Samples (sample)."""
    max_rounds: int = Field(default=2, ge=1, le=10)
    """Most critique/refine rounds (reflect)."""
    source: str | None = None
    """The sample node a vote counts (default: the previous node)."""
    code: str = ""
    """Python source defining tool(input, last) -> str (python)."""
    max_tokens: int = Field(default=160, ge=1, le=4096)
    """Most new tokens per call."""
    demos: list[Demo] = Field(default_factory=list, max_length=8)
    """Solved examples sent before the prompt as user/assistant turns (llm, sample)."""
    model: str | None = None
    """Model spec this node's calls go to (default: the model the agent runs on)."""
    models: list[str] = Field(default_factory=list, max_length=8)
    """cascade: the models tried in order (the cheapest first); sample: its `n` samples spread over
    these models (cross-model repeated sampling)."""
    agree: float = Field(default=0.6, gt=0.0, le=1.0)
    """cascade: the share of a model's `n` samples whose answers must agree for it to answer; below
    it the next model is asked."""
    arms: list[str] = Field(default_factory=list, max_length=8)
    """bandit: the reasoning strategies it chooses from (`agentmeta.agents.adaptive.ARMS`)."""
    policy: Literal["thompson", "ucb"] = "thompson"
    """bandit: how an arm is chosen from its statistics."""
    stats: dict[str, list[float]] = Field(default_factory=dict)
    """bandit: per arm, [reward sum, pulls] learned on the train split (frozen when evaluated)."""
    pulls: int = Field(default=1, ge=1, le=8)
    """bandit: most arms tried on one input; after the first, it stops when an answer agrees
    with an earlier one (online within the sample only)."""
    verifier: Literal["agreement", "self", "python"] = "agreement"
    """tree_search: how an answer is scored without the target: agreement with the other
    answers, the model's own yes/no check, or a program-of-thought computation."""


class Edge(BaseModel):
    source: str
    target: str
    when: str | None = None
    """Substring that must appear in the source's output to take this edge; `not:` negates."""


class GraphSpec(BaseModel):
    """A graph agent as data."""

    name: str = "graph-agent"
    thought: str = ""
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)
    entry: str | None = None
    output: str | None = None
    max_steps: int = Field(default=25, ge=1, le=200)

    @model_validator(mode="after")
    def _check(self) -> GraphSpec:
        ids = [n.id for n in self.nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"node ids must be unique, got {ids}")
        known = set(ids)
        for e in self.edges:
            for end in (e.source, e.target):
                if end not in known and end != "END":
                    raise ValueError(f"edge {e.source}->{e.target} names unknown node {end!r}")
        for ref in (self.entry, self.output):
            if ref is not None and ref not in known:
                raise ValueError(f"unknown node {ref!r} (nodes: {', '.join(ids)})")
        for i, n in enumerate(self.nodes):
            if not registry.has("node", n.type):
                raise ValueError(
                    f"node {n.id!r}: unknown type {n.type!r}; registered: {', '.join(registry.names('node'))}"
                )
            fields = {f for _, f, _, _ in string.Formatter().parse(n.prompt) if f}
            bad = fields - known - {"input", "last"}
            if bad:
                raise ValueError(
                    f"node {n.id!r}: prompt uses unknown variable(s) {sorted(bad)}; "
                    "use {input}, {last} or a node id"
                )
            if n.type == "vote":
                src = n.source or (ids[i - 1] if i else None)
                if src is None or next(x for x in self.nodes if x.id == src).type != "sample":
                    raise ValueError(f"vote node {n.id!r} must follow (or name as source) a sample node")
            if n.type == "python" and "def tool" not in n.code:
                raise ValueError(f"python node {n.id!r} must define tool(input, last)")
            if n.type == "cascade" and len(n.models) < 2:
                raise ValueError(f"cascade node {n.id!r} needs at least two models in `models`")
            if n.models and n.type not in ("cascade", "sample"):
                raise ValueError(f"node {n.id!r}: `models` applies to cascade and sample nodes, not {n.type}")
            if n.demos and not registry.get("node", n.type).takes_demos:
                raise ValueError(f"node {n.id!r}: demos apply to llm and sample nodes, not {n.type}")
            registry.get("node", n.type).check(n)
        return self


class _State(TypedDict):
    model: Any
    input: str
    last: str
    outputs: dict[str, Any]
    steps: int


def parse_spec(source: str | dict[str, Any]) -> GraphSpec:
    """Parse a JSON/YAML text or a dict into a `GraphSpec` (`InvalidAgentError` if not valid)."""
    data: Any = source
    if isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as e:
            raise InvalidAgentError(f"graph spec is not valid JSON/YAML: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise InvalidAgentError("graph spec must be a mapping with 'nodes'")
    try:
        return GraphSpec.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidAgentError(f"graph spec invalid at {where or 'top level'}: {first['msg']}") from e


def _render(template: str, state: _State) -> str:
    values = {"input": state["input"], "last": state["last"]}
    for k, v in state["outputs"].items():
        values[k] = "\n---\n".join(v) if isinstance(v, list) else str(v)
    return template.format_map(values)


def _model_for(handle: Any, spec: str | None) -> Any:
    """The model a node's calls go to: the run's handle, or the handle's view of another model
    (`with_model`: same seeding, tokens counted per model) or that model (`get_model` shares it)."""
    if spec is None or spec == getattr(handle, "spec", None):
        return handle
    if hasattr(handle, "with_model"):
        return handle.with_model(spec)
    from agentmeta.models import get_model

    return get_model(spec)


class GraphAgent:
    """A compiled graph agent. `run(task, model)` invokes the LangGraph graph."""

    kind = "graph"

    def __init__(self, spec: GraphSpec, name: str | None = None) -> None:
        self.spec = spec
        self.name = name or spec.name
        self.source = spec.model_dump_json(indent=2, exclude_defaults=True)
        self._graph = self._compile()

    @classmethod
    def from_source(cls, source: str | dict[str, Any], name: str | None = None) -> GraphAgent:
        return cls(parse_spec(source), name=name)

    # -- node functions ------------------------------------------------------------------
    @staticmethod
    def _call(
        state: _State, node: Node, prompt: str, n: int = 1, temperature: float | None = None,
        model: str | None = None,
    ) -> list[str]:  # fmt: skip
        messages = [{"role": "system", "content": f"You are a {node.role}."}]
        if registry.get("node", node.type).takes_demos:
            for demo in node.demos:
                messages.append({"role": "user", "content": render_demo(node.prompt, demo.input)})
                messages.append({"role": "assistant", "content": demo.reply()})
        messages.append({"role": "user", "content": prompt})
        resp = _model_for(state["model"], model or node.model).generate(
            messages,
            n=n,
            temperature=node.temperature if temperature is None else temperature,
            max_tokens=node.max_tokens,
        )
        return resp.texts

    def _sample(self, node: Node, state: _State) -> list[str]:
        temp = node.temperature if node.temperature > 0 else 0.8
        prompt = _render(node.prompt, state)
        if not node.models:
            return self._call(state, node, prompt, n=node.n, temperature=temp)
        out: list[str] = []
        for i, spec in enumerate(node.models):  # n spread over the models, the first ones take the rest
            k = node.n // len(node.models) + (i < node.n % len(node.models))
            if k:
                out += self._call(state, node, prompt, n=k, temperature=temp, model=spec)
        return out

    def _cascade(self, node: Node, state: _State) -> str:
        """Ask each model in turn for `n` samples; the first whose majority answer has at least
        `agree` of its samples answers (the last model answers in any case)."""
        temp = node.temperature if node.temperature > 0 else 0.8
        prompt = _render(node.prompt, state)
        for k, spec in enumerate(node.models):
            texts = self._call(state, node, prompt, n=node.n, temperature=temp, model=spec)
            keys = [vote_key(extract_answer(t)) for t in texts]
            counts = Counter(k for k in keys if k)  # an empty answer agrees with nothing
            share = max(counts.values()) / len(texts) if counts else 0.0
            if share >= node.agree or k == len(node.models) - 1:
                return majority(texts)
        raise AssertionError("unreachable: a cascade has at least two models")

    def _node_fn(self, node: Node, index: int):  # noqa: ANN202
        run = registry.get("node", node.type).run

        def fn(state: _State) -> dict[str, Any]:
            if state["steps"] >= self.spec.max_steps:
                raise InvalidAgentError(f"graph ran more than max_steps={self.spec.max_steps} steps")
            out = run(self, node, state, index)
            last = "\n---\n".join(out) if isinstance(out, list) else str(out)
            return {"outputs": {**state["outputs"], node.id: out}, "last": last, "steps": state["steps"] + 1}

        return fn

    def _vote(self, node: Node, state: _State, index: int) -> str:
        src = node.source or self.spec.nodes[index - 1].id
        samples = state["outputs"].get(src) or []
        return "Answer: " + extract_answer(majority(samples))

    def _reflect(self, node: Node, state: _State) -> str:
        answer = state["last"]
        for _ in range(node.max_rounds):
            critique = self._call(
                state,
                node,
                (
                    f"Task: {state['input']}\n\nProposed answer:\n{answer}\n\n"
                    "Check the answer carefully. If it is correct, reply with exactly OK. "
                    "Otherwise explain the mistake in one or two sentences."
                ),
            )[0]
            if critique.strip().upper().startswith("OK"):
                break
            answer = self._call(
                state,
                node,
                (
                    f"Task: {state['input']}\n\nPrevious answer:\n{answer}\n\nFeedback:\n{critique}\n\n"
                    f"Write an improved answer. {ANSWER_HINT}"
                ),
            )[0]
        return answer

    def _python(self, node: Node, state: _State) -> str:
        from agentmeta.sandbox import default_sandbox

        # default_sandbox() raises SandboxUnavailableError (a setup error that stops the run, not this
        # node's output) where nothing can isolate the code and the user did not opt in.
        res = default_sandbox().run(node.code, entry="tool", args=[state["input"], state["last"]])
        if not res.ok:
            return f"Error ({res.error_kind}): {res.error}"
        return str(res.value)

    # -- compilation ---------------------------------------------------------------------
    def _compile(self) -> Any:
        from langgraph.graph import END, START, StateGraph

        spec = self.spec
        graph = StateGraph(_State)
        for i, node in enumerate(spec.nodes):
            graph.add_node(node.id, self._node_fn(node, i))
        ids = [n.id for n in spec.nodes]
        graph.add_edge(START, spec.entry or ids[0])
        edges = spec.edges or [Edge(source=a, target=b) for a, b in zip(ids, ids[1:], strict=False)]
        by_source: dict[str, list[Edge]] = {}
        for e in edges:
            by_source.setdefault(e.source, []).append(e)
        for node_id in ids:
            outs = by_source.get(node_id, [])
            if not outs:
                graph.add_edge(node_id, END)
            elif len(outs) == 1 and outs[0].when is None:
                graph.add_edge(node_id, END if outs[0].target == "END" else outs[0].target)
            else:
                graph.add_conditional_edges(node_id, self._router(node_id, outs, END))
        return graph.compile()

    @staticmethod
    def _router(node_id: str, outs: list[Edge], end: str):  # noqa: ANN205
        def route(state: _State) -> str:
            text = str(state["outputs"].get(node_id, "")).lower()
            default = end
            for e in outs:
                target = end if e.target == "END" else e.target
                if e.when is None:
                    default = target
                    continue
                negate = e.when.startswith("not:")
                needle = (e.when[4:] if negate else e.when).lower()
                if (needle in text) != negate:
                    return target
            return default

        return route

    def trace(self, task_input: str, model: Model) -> tuple[str, dict[str, Any]]:
        """Run the graph; return its answer and every node's output (a list for sample nodes)."""
        state: _State = {"model": model, "input": task_input, "last": "", "outputs": {}, "steps": 0}
        final = self._graph.invoke(state, config={"recursion_limit": self.spec.max_steps + 5})
        out_id = self.spec.output or self.spec.nodes[-1].id
        out = final["outputs"].get(out_id, final["last"])
        text = "\n".join(out) if isinstance(out, list) else str(out)
        return extract_answer(text), dict(final["outputs"])

    def run(self, task_input: str, model: Model) -> str:
        return self.trace(task_input, model)[0]


NodeRun = Callable[[GraphAgent, Node, Any, int], Any]
"""How a node type runs: `(agent, node, state, index) -> output` (a text, or a list of texts).
`state` holds `model` (the run's model handle), `input`, `last` and `outputs` (earlier nodes')."""

COMMON_FIELDS = ("type", "prompt", "role", "temperature", "max_tokens", "model")


@dataclass(frozen=True)
class NodeType:
    """A registered graph node type."""

    run: NodeRun
    fields: tuple[str, ...]
    """The `Node` fields this type reads: the duplicate key (`search.canonical`) keeps only these."""
    takes_demos: bool = False
    """Its calls can be shown demonstrations (`Node.demos`)."""
    check: Callable[[Node], None] = lambda node: None
    """Raises `ValueError` for a node of this type that cannot run (checked when a spec is parsed)."""


def register_node(
    name: str, run: NodeRun, fields: tuple[str, ...], doc: str, *, takes_demos: bool = False,
    check: Callable[[Node], None] | None = None, replace: bool = False,
) -> NodeType:  # fmt: skip
    """Register a graph node type (a plugin adds one the same way; `agentmeta plugins` lists it)."""
    entry = NodeType(run, tuple(fields), takes_demos, check or (lambda node: None))
    registry.add("node", name, entry, doc, replace=replace)
    return entry


register_node("llm", lambda a, n, s, i: a._call(s, n, _render(n.prompt, s))[0],
              (*COMMON_FIELDS, "demos"), "one call of a prompt template", takes_demos=True)
register_node("sample", lambda a, n, s, i: a._sample(n, s), (*COMMON_FIELDS, "demos", "n", "models"),
              "n calls of a prompt (a list of texts), optionally spread over several models", takes_demos=True)
register_node("cascade", lambda a, n, s, i: a._cascade(n, s), (*COMMON_FIELDS[:-1], "n", "models", "agree"),
              "models asked in turn until one's samples agree (Language Model Cascades)")
register_node("vote", lambda a, n, s, i: a._vote(n, s, i), ("type", "source"),
              "majority vote over a sample node's answers")
register_node("reflect", lambda a, n, s, i: a._reflect(n, s),
              ("type", "role", "temperature", "max_tokens", "max_rounds", "model"),
              "critique the previous answer and refine it until the critic says OK")
register_node("python", lambda a, n, s, i: a._python(n, s), ("type", "code"),
              "tool(input, last) run in the sandbox (program-of-thought's calculator)")  # fmt: skip


DEMO_K = 3
"""Demonstrations a `demos` step of the meta-agent shows."""


def spec_from_steps(
    name: str, thought: str, steps: list[dict[str, Any]], demos_pool: list[dict[str, str]] | None = None
) -> GraphSpec:
    """Build a chain graph from the meta-agent's simplified step list (always a valid spec).

    Each step: {"type": "llm"|"sample_vote"|"reflect"|"program_of_thought"|"demos", "role": str,
    "instruction": str, "temperature": float}. Every prompt sees the task and the previous step's
    output. "program_of_thought": an llm node asked for one Python expression, then a python node
    evaluating it (`POT_CODE`). "demos": an llm node shown `DEMO_K` solved examples first, taken in
    order from `demos_pool` (`{input, answer}` dicts from the train split; none left: no examples).
    """
    nodes: list[dict[str, Any]] = []
    pool = list(demos_pool or [])
    for i, step in enumerate(steps, 1):
        kind = step.get("type", "llm")
        role = (step.get("role") or "helpful assistant").strip()[:200] or "helpful assistant"
        instruction = str(step.get("instruction") or "")
        prompt = step_prompt(instruction, previous=bool(nodes))
        temp = float(step.get("temperature") or 0.0)
        temp = min(max(temp, 0.0), 1.5)
        if kind == "sample_vote":
            nodes.append(
                {
                    "id": f"s{i}",
                    "type": "sample",
                    "prompt": prompt,
                    "role": role,
                    "temperature": temp or 0.8,
                    "n": 5,
                }
            )
            nodes.append({"id": f"v{i}", "type": "vote", "source": f"s{i}"})
        elif kind == "reflect":
            if not nodes:
                nodes.append({"id": f"a{i}", "type": "llm", "prompt": prompt, "role": role})
            nodes.append({"id": f"r{i}", "type": "reflect", "role": role, "max_rounds": 1})
        elif kind == "program_of_thought":
            nodes.extend(pot_nodes(f"p{i}", f"x{i}", instruction, previous=bool(nodes), role=role))
        else:
            node = {"id": f"n{i}", "type": "llm", "prompt": prompt, "role": role, "temperature": temp}
            if kind == "demos":
                demos, pool = pool[:DEMO_K], pool[DEMO_K:]
                node["demos"] = demos
            nodes.append(node)
    if not nodes:
        raise InvalidAgentError("the graph has no steps")
    return parse_spec(json.loads(json.dumps({"name": name, "thought": thought, "nodes": nodes})))
