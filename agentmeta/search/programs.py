"""Candidates as strategies see them, by what their kind can do (`AgentKind.capabilities`), never
by the kind's name: a graph-capable kind's candidates parse to a `GraphSpec`, a slotted kind's
have slots, and every spec has a duplicate key."""

from __future__ import annotations

from typing import Any

from agentmeta.agents.base import AgentSpec, get_kind
from agentmeta.agents.graph import GraphSpec, parse_spec
from agentmeta.agents.kinds import slots_of
from agentmeta.agents.slots import Slot
from agentmeta.errors import InvalidAgentError
from agentmeta.search.operators import canonical


def graph_spec(graph: GraphSpec, kind: str, name: str | None = None, thought: str | None = None) -> AgentSpec:
    """`graph` as a candidate of the graph-capable kind `kind`, named `name` (default: the graph's)."""
    return AgentSpec(
        kind=kind, name=name if name is not None else graph.name,
        thought=thought if thought is not None else graph.thought,
        source=graph.model_dump_json(indent=2, exclude_defaults=True),
    )  # fmt: skip


def graph_of(candidate: Any) -> GraphSpec | None:
    """The candidate's graph, or None if its kind is not graph-capable or its source does not parse."""
    kind = getattr(candidate, "kind", None)
    if not kind or not candidate.source or "operators" not in get_kind(kind).capabilities:
        return None
    try:
        return parse_spec(candidate.source)
    except InvalidAgentError:
        return None


def spec_of(candidate: Any) -> AgentSpec:
    """A candidate (archive record or spec) as an `AgentSpec`."""
    if isinstance(candidate, AgentSpec):
        return candidate
    return AgentSpec(
        kind=candidate.kind, name=candidate.name, thought=candidate.thought or "", source=candidate.source
    )


def slots_or_none(candidate: Any) -> list[Slot] | None:
    """The candidate's slots, or None if its kind has none or its source does not parse."""
    kind = getattr(candidate, "kind", None)
    if not kind or not candidate.source or "slots" not in get_kind(kind).capabilities:
        return None
    try:
        return slots_of(spec_of(candidate))
    except InvalidAgentError:
        return None


def spec_key(spec: Any) -> str:
    """The duplicate key: `operators.canonical` for a graph-capable kind, the kind's own `key`, else
    the kind's name and the source."""
    kind = get_kind(spec.kind)
    try:
        if kind.graph:
            return canonical(parse_spec(spec.source))
        if kind.key is not None:
            return kind.key(spec_of(spec))
    except InvalidAgentError:
        pass
    return f"{spec.kind}:{spec.source}"


def named(spec: AgentSpec, name: str, thought: str) -> AgentSpec:
    """`spec` with a new name and thought (a graph's source carries them too)."""
    if get_kind(spec.kind).graph:
        return graph_spec(parse_spec(spec.source).model_copy(update={"name": name, "thought": thought}), spec.kind)
    return spec.model_copy(update={"name": name, "thought": thought})
