"""Settings read from the environment, declared once."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL = "smollm2"


def cache_dir() -> Path:
    """Root of agentmeta's caches (dense model copy, call cache).

    `AGENTMETA_CACHE_DIR` overrides; default `$XDG_CACHE_HOME/agentmeta` or `~/.cache/agentmeta`.
    """
    env = os.environ.get("AGENTMETA_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "agentmeta"


def models_dir() -> Path:
    """Where converted model weights are kept; `AGENTMETA_MODELS_DIR` overrides `<cache_dir>/models`."""
    env = os.environ.get("AGENTMETA_MODELS_DIR")
    return Path(env).expanduser() if env else cache_dir() / "models"


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


def call_cache_enabled() -> bool:
    """The disk cache of seeded model calls; `AGENTMETA_CALL_CACHE=0` turns it off."""
    return _flag("AGENTMETA_CALL_CACHE", True)


def base_url() -> str | None:
    """Base URL of an OpenAI-compatible server: `AGENTMETA_BASE_URL`, else `OPENAI_BASE_URL`."""
    return os.environ.get("AGENTMETA_BASE_URL") or os.environ.get("OPENAI_BASE_URL") or None


def hub_offline() -> bool:
    return _flag("HF_HUB_OFFLINE", False) or _flag("TRANSFORMERS_OFFLINE", False)


def llamacpp_extra_buffers() -> bool | None:
    """`AGENTMETA_LLAMACPP_EXTRA_BUFFERS=0/1`: whether llama.cpp may use its extra weight buffer
    types (AMX) for quantized weights; None when unset (a one-time probe decides,
    `agentmeta.models.llamacpp.extra_buffers_work`)."""
    name = "AGENTMETA_LLAMACPP_EXTRA_BUFFERS"
    return _flag(name, True) if os.environ.get(name, "").strip() else None


def embedded_dtype() -> str | None:
    """`AGENTMETA_DTYPE`: the embedded model's weight format when a spec does not name one
    (`float32`: greedy outputs that do not depend on the batch; `bfloat16`); None when unset
    (bfloat16 where the CPU computes it natively, see `agentmeta.models.hf.embedded_dtype`)."""
    return os.environ.get("AGENTMETA_DTYPE", "").strip() or None
