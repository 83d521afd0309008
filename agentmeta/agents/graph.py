"""Graph agents: a declarative spec (JSON or YAML) compiled to a LangGraph `StateGraph`.

Nodes:
- ``llm``: one call; ``prompt`` is a template over ``{input}`` (the task), ``{last}`` (the previous
  node's output) and ``{<node id>}`` (any earlier node's output); ``role`` and ``temperature``.
- ``sample``: ``n`` calls of the prompt at ``temperature``; its output is a list of texts.
- ``vote``: majority vote over the answers of a ``sample`` node (``source``, default the previous).
- ``reflect``: critique the previous answer and refine it until the critic says OK, at most
  ``max_rounds`` times.
- ``python``: ``code`` defining ``tool(input, last) -> str``, run in the sandbox (which refuses,
  with `SandboxUnavailableError`, where it cannot isolate and the user did not opt in).

Edges: ``{"source": a, "target": b}``, with an optional ``when`` (a substring, case-insensitive,
that must be in ``a``'s output; prefix ``not:`` negates). Without edges, nodes form a chain in
order. The answer is the text after the last ``Answer:`` in the ``output`` node (default: last).
"""

from __future__ import annotations

import json
import string
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from agentmeta.agents.answers import extract_answer, majority
from agentmeta.errors import InvalidAgentError

if TYPE_CHECKING:
    from agentmeta.models import Model

NodeType = Literal["llm", "sample", "vote", "reflect", "python"]
ANSWER_HINT = "Think it through briefly, then end with a line 'Answer: <your answer>'."


class Node(BaseModel):
    """One step of a graph agent."""

    id: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name of the node; its output is `{<id>}` in later prompts."""
    type: NodeType = "llm"
    """llm, sample, vote, reflect or python."""
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
        state: _State, node: Node, prompt: str, n: int = 1, temperature: float | None = None
    ) -> list[str]:
        messages = [
            {"role": "system", "content": f"You are a {node.role}."},
            {"role": "user", "content": prompt},
        ]
        resp = state["model"].generate(
            messages,
            n=n,
            temperature=node.temperature if temperature is None else temperature,
            max_tokens=node.max_tokens,
        )
        return resp.texts

    def _node_fn(self, node: Node, index: int):  # noqa: ANN202
        ids = [n.id for n in self.spec.nodes]

        def fn(state: _State) -> dict[str, Any]:
            if state["steps"] >= self.spec.max_steps:
                raise InvalidAgentError(f"graph ran more than max_steps={self.spec.max_steps} steps")
            out: Any
            if node.type == "llm":
                out = self._call(state, node, _render(node.prompt, state))[0]
            elif node.type == "sample":
                temp = node.temperature if node.temperature > 0 else 0.8
                out = self._call(state, node, _render(node.prompt, state), n=node.n, temperature=temp)
            elif node.type == "vote":
                src = node.source or ids[index - 1]
                samples = state["outputs"].get(src) or []
                out = "Answer: " + extract_answer(majority(samples))
            elif node.type == "reflect":
                out = self._reflect(node, state)
            else:
                out = self._python(node, state)
            last = "\n---\n".join(out) if isinstance(out, list) else str(out)
            return {"outputs": {**state["outputs"], node.id: out}, "last": last, "steps": state["steps"] + 1}

        return fn

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
        from agentmeta.agents.sandbox import default_sandbox

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

    def run(self, task_input: str, model: Model) -> str:
        state: _State = {"model": model, "input": task_input, "last": "", "outputs": {}, "steps": 0}
        final = self._graph.invoke(state, config={"recursion_limit": self.spec.max_steps + 5})
        out_id = self.spec.output or self.spec.nodes[-1].id
        out = final["outputs"].get(out_id, final["last"])
        text = "\n".join(out) if isinstance(out, list) else str(out)
        return extract_answer(text)


def spec_from_steps(name: str, thought: str, steps: list[dict[str, Any]]) -> GraphSpec:
    """Build a chain graph from the meta-agent's simplified step list (always a valid spec).

    Each step: {"type": "llm"|"sample_vote"|"reflect", "role": str, "instruction": str,
    "temperature": float}. Every prompt sees the task and the previous step's output.
    """
    nodes: list[dict[str, Any]] = []
    for i, step in enumerate(steps, 1):
        kind = step.get("type", "llm")
        role = (step.get("role") or "helpful assistant").strip()[:200] or "helpful assistant"
        instruction = (step.get("instruction") or "").replace("{", "(").replace("}", ")").strip()
        prompt = (
            "Task: {input}\n\n"
            + ("Previous step:\n{last}\n\n" if nodes else "")
            + (instruction + "\n\n" if instruction else "")
            + ANSWER_HINT
        )
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
        else:
            nodes.append({"id": f"n{i}", "type": "llm", "prompt": prompt, "role": role, "temperature": temp})
    if not nodes:
        raise InvalidAgentError("the graph has no steps")
    return parse_spec(json.loads(json.dumps({"name": name, "thought": thought, "nodes": nodes})))
