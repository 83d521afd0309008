"""The duplicate key of graph agents: `canonical(spec)` is the graph's JSON with sorted keys,
without its name and thought, node ids renamed by position, and only the fields each node type
uses, so two graphs that behave the same share it."""

from __future__ import annotations

import json
import string
from typing import Any

from agentmeta.agents.graph import GraphSpec
from agentmeta.registry import registry

NodeDict = dict[str, Any]


def _rewrite_prompt(prompt: str, mapping: dict[str, str]) -> str:
    out = []
    for literal, field, spec, conv in string.Formatter().parse(prompt):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            out.append(
                "{"
                + mapping.get(field, field)
                + (f"!{conv}" if conv else "")
                + (f":{spec}" if spec else "")
                + "}"
            )
    return "".join(out)


def _rename(nodes: list[NodeDict], mapping: dict[str, str]) -> list[NodeDict]:
    """Nodes with ids renamed by `mapping`, references in prompts and vote sources included."""
    out = []
    for n in nodes:
        m = dict(n)
        m["id"] = mapping.get(m["id"], m["id"])
        if "prompt" in m:
            m["prompt"] = _rewrite_prompt(m["prompt"], mapping)
        if m.get("source"):
            m["source"] = mapping.get(m["source"], m["source"])
        out.append(m)
    return out


def _dump(spec: GraphSpec) -> list[NodeDict]:
    return [n.model_dump(mode="json") for n in spec.nodes]


def _fields(node_type: str) -> tuple[str, ...]:
    return registry.get("node", node_type).fields


def canonical(spec: GraphSpec) -> str:
    """The key two graphs that behave the same share: JSON with sorted keys, without name and
    thought, node ids renamed by position (`n0`, `n1`, ... in prompts, sources and edges too), a
    vote's default source and the default entry, output and chain edges made explicit-free, and
    only the fields each node type uses."""
    nodes = _dump(spec)
    ids = [n["id"] for n in nodes]
    for i, n in enumerate(nodes):
        if n["type"] == "vote" and not n.get("source") and i:
            n["source"] = ids[i - 1]
    mapping = {old: f"n{i}" for i, old in enumerate(ids)}
    renamed = _rename(nodes, mapping)
    slim = [{"id": n["id"], **{k: n[k] for k in _fields(n["type"]) if k in n}} for n in renamed]
    edges = [
        {"source": mapping.get(e.source, e.source), "target": mapping.get(e.target, e.target), "when": e.when}
        for e in spec.edges
    ]
    chain = [{"source": f"n{i}", "target": f"n{i + 1}", "when": None} for i in range(len(ids) - 1)]
    data = {
        "nodes": slim,
        "edges": [] if edges == chain else edges,
        "entry": None if spec.entry in (None, ids[0]) else mapping[spec.entry],
        "output": None if spec.output in (None, ids[-1]) else mapping[spec.output],
        "max_steps": spec.max_steps,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
