"""Extra agent kinds registered by other subsystems (e.g. the conductor)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentmeta.errors import InvalidAgentError

if TYPE_CHECKING:
    from agentmeta.agents.base import AgentSpec

_BUILDERS: dict[str, Callable[[AgentSpec], Any]] = {}


def register_kind(kind: str, builder: Callable[[AgentSpec], Any]) -> None:
    _BUILDERS[kind] = builder


def build_extra_kind(spec: AgentSpec) -> Any:
    if spec.kind not in _BUILDERS:
        raise InvalidAgentError(f"no builder for agent kind {spec.kind!r}")
    return _BUILDERS[spec.kind](spec)
