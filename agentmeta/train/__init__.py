"""Training loops: MetaICL (episodes -> TRL SFT + LoRA) and GRPO (rewards = suite scorers).

Heavy dependencies (torch, transformers, trl, peft) are imported when a loop runs.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "train_metaicl",
    "train_grpo",
    "TrainResult",
    "AdapterInfo",
    "load_adapter_info",
    "load_adapter",
    "adapter_model_spec",
]

_LAZY = {
    "train_metaicl": "agentmeta.train.metaicl",
    "train_grpo": "agentmeta.train.grpo",
    "TrainResult": "agentmeta.train.common",
    "AdapterInfo": "agentmeta.train.common",
    "load_adapter_info": "agentmeta.train.common",
    "load_adapter": "agentmeta.train.common",
    "adapter_model_spec": "agentmeta.train.common",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agentmeta.train' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
