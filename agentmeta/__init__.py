"""agentmeta: a meta-agent writes and scores candidate agents and prompts, keeping them in an archive.

`import agentmeta` stays light: torch, transformers, vllm, trl and SQLAlchemy load only when the
names that need them are first used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from agentmeta.errors import AgentMetaError
from agentmeta.models import GenerateRequest, GenerateResponse, Message, Model, get_model

__version__ = "0.1.0"

# name -> module that defines it, imported on first access
_LAZY = {
    "load_suite": "agentmeta.eval",
    "evaluate": "agentmeta.eval",
    "EvalResult": "agentmeta.eval",
    "Sample": "agentmeta.eval",
    "Score": "agentmeta.eval",
    "Suite": "agentmeta.eval",
    "Archive": "agentmeta.archive",
    "Candidate": "agentmeta.archive",
    "search": "agentmeta.search",
    "SearchConfig": "agentmeta.search",
    "Agent": "agentmeta.agents",
    "AgentSpec": "agentmeta.agents",
    "Conductor": "agentmeta.conductor",
    "ConductorResult": "agentmeta.conductor",
    "Sandbox": "agentmeta.sandbox",
}

__all__ = [
    "AgentMetaError",
    "GenerateRequest",
    "GenerateResponse",
    "Message",
    "Model",
    "__version__",
    "get_model",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'agentmeta' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
