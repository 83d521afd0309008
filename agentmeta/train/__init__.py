"""Training loops: MetaICL (episodes -> TRL SFT + LoRA) and GRPO (rewards = suite scorers).

In TRL's shape: one settings class and one entry point per algorithm,
`train_metaicl(MetaICLConfig(...))` and `train_grpo(GRPOConfig(...))`, both running the one loop
skeleton `run_loop` with the algorithm's `Algorithm` hooks. Heavy dependencies (torch,
transformers, trl, peft) are imported when a loop runs.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "train_metaicl",
    "train_grpo",
    "train_distill",
    "DistillConfig",
    "MetaICLConfig",
    "GRPOConfig",
    "RunConfig",
    "Algorithm",
    "run_loop",
    "TrainResult",
    "AdapterInfo",
    "load_adapter_info",
    "load_adapter",
    "adapter_model_spec",
]

_LAZY = {
    "train_metaicl": "agentmeta.train.metaicl",
    "train_grpo": "agentmeta.train.grpo",
    "train_distill": "agentmeta.train.distill",
    "DistillConfig": "agentmeta.train.distill",
    "MetaICLConfig": "agentmeta.train.metaicl",
    "GRPOConfig": "agentmeta.train.grpo",
    "RunConfig": "agentmeta.train.common",
    "Algorithm": "agentmeta.train.common",
    "run_loop": "agentmeta.train.common",
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
