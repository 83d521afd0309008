"""agentmeta: a meta-agent writes and scores candidate agents and prompts, keeping them in an archive.

`import agentmeta` stays light: torch, transformers, vllm and trl load only when first used.
"""

from __future__ import annotations

from agentmeta.errors import AgentMetaError
from agentmeta.models import GenerateRequest, GenerateResponse, Message, Model, get_model

__version__ = "0.1.0"

__all__ = [
    "AgentMetaError",
    "GenerateRequest",
    "GenerateResponse",
    "Message",
    "Model",
    "__version__",
    "get_model",
]
