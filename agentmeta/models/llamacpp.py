"""llama.cpp backend: `llamacpp` (the embedded model), `llamacpp/<file.gguf>` (any GGUF as it is);
`llamacpp/q8_0` and `llamacpp/<file.gguf>:q8_0` run a copy converted by llama.cpp.

`llamacpp` runs the embedded model's weights de-quantized once to float16 (`llamacpp/f16`, a
270 MB copy written in about a second): the same values the `smollm2` default de-quantizes to
float32, so greedy outputs mostly equal its (the models guide has the measured agreement and
speeds). `llamacpp/q4_1` runs the shipped file as it is.

The model runs in-process through llama-cpp-python's C API (extra `llamacpp`: it builds llama.cpp
from source, which needs cmake and a C++ compiler; build it
with `CMAKE_ARGS="-DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF"`: on its own thread pool rather than OpenMP,
so that it does not slow torch down in the same process, and without the multimodal library).
Quantized weights use llama.cpp's extra buffer types (AMX tiles, repacked layouts) only where a
one-time probe in a child process decodes with them: some virtual machines report AMX and then
fault on its instructions (`extra_buffers_work`).

One decode thread schedules every caller's completions as llama.cpp's server does (continuous
batching over its multi-sequence KV cache): each completion holds one sequence of the cache; a
request joins at the next step (its prompt prefilled in that step's batch), a finished completion
leaves at once and frees its sequence; the n completions of one request share one prefill (the
prompt's cache is copied to their sequences). Sampling runs in llama.cpp per completion: greedy,
or temperature / top-p with a seeded generator; JSON schemas become a GBNF grammar that constrains
sampling; stop strings end a completion where they appear.

With `prompt_cache=True` a freed sequence keeps its cache until it is reused: a greedy request
takes the free sequence whose cached tokens share the longest head with its prompt (system prompt,
instructions, demonstrations, an earlier turn) and prefills only the rest, as llama.cpp's server
does with its slots. It is off by default: llama.cpp rounds a short prefill step slightly
differently from a whole prompt's, so with it a greedy output can depend on which prompts came
before, and a sampled request would not repeat under its seed (sampled requests never reuse a head).
"""

from __future__ import annotations

import ctypes
import json
import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmeta.errors import AgentMetaError, ModelCallError, ModelLoadError, ModelRequestError
from agentmeta.models import threads
from agentmeta.models.base import Provider
from agentmeta.models.engine import Job, cut_at_stop  # shared with the transformers engine
from agentmeta.models.fingerprint import digest, file_fingerprint
from agentmeta.models.gguf import (  # GGUF files, re-quantized copies, the AMX probe
    EMBEDDED_TYPE,
    QUANT_TYPES,
    _llama,
    extra_buffers_work,
    file_type,
    requantized,
)
from agentmeta.models.types import FinishReason, GenerateRequest, GenerateResponse

log = logging.getLogger(__name__)


def parse_spec(rest: str) -> tuple[str | None, str | None]:
    """`(file or None for the embedded GGUF, quantization type or None)` from what follows
    `llamacpp/`: "", "q8_0", "<file.gguf>" or "<file.gguf>:q8_0"."""
    if rest.lower() in QUANT_TYPES:
        return None, rest.lower()
    path, sep, quant = rest.rpartition(":")
    if sep and quant.lower() in QUANT_TYPES and path:
        return path, quant.lower()
    return rest or None, None



@dataclass
class _Row:
    """One completion: its sequence of the cache, sampler chain and text so far."""

    job: Job
    prompt: list[int]
    max_tokens: int
    stop: list[str]
    sampler: Any
    reuse: bool = False
    """Greedy: may start from a cached prompt head."""
    seq: int = -1
    start: int = 0
    """The first prompt position to prefill (those before it are in the sequence's cache)."""
    pos: int = 0
    next_token: int | None = None
    out_index: int = -1
    tokens: list[int] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    text: str | None = None
    finish: FinishReason | None = None


class LlamaCppProvider(Provider):
    """A GGUF model in llama.cpp, with continuous batching across callers.

    `path` is a GGUF file, run as it is; `quantize` (one of `QUANT_TYPES`) runs a copy of it
    converted to that type instead, written once (`requantized`). Without `path`, the embedded
    model's GGUF converted to `quantize` (default `EMBEDDED_TYPE`, float16).

    `prompt_cache=True` lets greedy requests start from a freed sequence's cached prompt head
    (see the module's text: faster with long shared prompts, but outputs may then depend on
    earlier requests). `max_batch` completions decode at once (each holds a sequence of the KV cache, `context`
    tokens long: prompt plus completion, at most the model's training context); more wait for a
    free one. The cache is allocated when the model loads: `max_batch * context` tokens (for
    SmolLM2-135M, 23 KB each: 750 MB at the defaults). `n_threads` defaults to torch's setting
    (`agentmeta.models.threads`); `prefill_tokens` caps the tokens of one step (a longer prompt
    is refused).
    """

    continuous = True
    DECODE_VERSION = 1
    """Bump when a change here changes outputs, so old cache entries are not served."""

    def __init__(
        self,
        path: str | None = None,
        *,
        quantize: str | None = None,
        max_batch: int = 16,
        context: int = 2048,
        n_threads: int | None = None,
        prefill_tokens: int = 2048,
        prompt_cache: bool = False,
    ) -> None:
        super().__init__()
        if max_batch < 1 or context < 16:
            raise ModelLoadError("llamacpp: max_batch must be >= 1 and context >= 16")
        lib = _llama()
        self.lib = lib
        if path is None:
            from agentmeta.models.hf import gguf_path

            gguf = gguf_path()
            self.spec = "llamacpp" if quantize is None else f"llamacpp/{quantize.lower()}"
            quantize = quantize or EMBEDDED_TYPE
        else:
            gguf = Path(path).expanduser()
            self.spec = f"llamacpp/{path}"
            if not gguf.is_file():
                raise ModelLoadError(f"GGUF file {path!r} does not exist")
        if quantize:
            quantize = quantize.lower()
            gguf = requantized(lib, gguf, quantize)
            if path is not None:
                self.spec = f"{self.spec}:{quantize}"
        self.path = gguf
        self.max_batch = max_batch
        self.n_threads = n_threads or threads.torch_threads()
        lib.llama_backend_init()
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = 0
        # float weights have no AMX kernels: their extra buffer type is safe everywhere (and its
        # kernels keep greedy outputs independent of what else is in the batch)
        float_file = file_type(gguf) in {lib.LLAMA_FTYPE_ALL_F32, lib.LLAMA_FTYPE_MOSTLY_F16, lib.LLAMA_FTYPE_MOSTLY_BF16}
        self.extra_buffers = float_file or extra_buffers_work(lib)
        mparams.use_extra_bufts = self.extra_buffers
        self.model = lib.llama_model_load_from_file(str(gguf).encode(), mparams)
        if not self.model:
            raise ModelLoadError(f"llama.cpp could not load {gguf.name} (not a GGUF model it supports)")
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        train_ctx = int(lib.llama_model_n_ctx_train(self.model))
        self.context = min(context, train_ctx) if train_ctx > 0 else context
        self.batch_tokens = max(prefill_tokens, max_batch)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = self.context * max_batch
        cparams.n_batch = self.batch_tokens
        cparams.n_ubatch = min(512, self.batch_tokens)
        cparams.n_seq_max = max_batch
        cparams.n_threads = self.n_threads
        cparams.n_threads_batch = self.n_threads
        # one cache stream per sequence: a step attends over each row's own columns, not over
        # every row's (a unified cache was 1.3x slower at 16 rows here)
        cparams.kv_unified = False
        self.ctx = lib.llama_init_from_model(self.model, cparams)
        if not self.ctx:
            lib.llama_model_free(self.model)
            raise ModelLoadError(f"llama.cpp could not create a context for {gguf.name}")
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(self.batch_tokens, 0, 1)
        template = self._meta("tokenizer.chat_template")
        if not template:
            raise ModelLoadError(f"{gguf.name} has no chat template (tokenizer.chat_template)")
        self.template = self._compile_template(template)
        self._grammars: dict[str, str] = {}
        self.backend_steps = 0
        """llama_decode calls run (one per step of the whole batch)."""
        self.prefills = 0
        """Prompts prefilled (the n completions of a request count once)."""
        self.prompt_cache = prompt_cache
        self.reused_tokens = 0
        """Prompt tokens not prefilled because a free sequence's cache held them."""
        self._cached: list[list[int]] = [[] for _ in range(max_batch)]
        """Per free sequence, the tokens its cache holds (positions 0, 1, ...; empty unless
        `prompt_cache`: a sequence freed without it is cleared at once)."""
        self._waiting: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.settings = {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "decode_version": self.DECODE_VERSION,
            "llama_cpp": getattr(lib, "__version__", "?"),
            "extra_buffers": self.extra_buffers,  # AMX and repacked kernels round differently
        }
        self._identity = "llamacpp:" + digest({"file": file_fingerprint(gguf), "engine": self.settings})

    def identity(self) -> str:
        """The GGUF file's fingerprint, llama-cpp-python's version and this backend's settings."""
        return self._identity

    # -- tokens and text -------------------------------------------------------------------
    def _meta(self, key: str) -> str:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lib.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else ""

    def _piece(self, token: int, *, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        buf = (self.lib.llama_token * cap)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buf, cap, False, True)
        return list(buf[:n])

    def _compile_template(self, source: str) -> Any:
        """The GGUF's chat template, compiled once (sandboxed, as transformers renders templates)."""
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise jinja2.TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            template = env.from_string(source)
        except jinja2.TemplateError as e:
            raise ModelLoadError(f"{self.path.name}: its chat template does not compile: {e}") from e
        template.globals.update(
            bos_token=self._piece(self.lib.llama_vocab_bos(self.vocab), special=True).decode("utf-8", errors="replace"),
            eos_token=self._piece(self.lib.llama_vocab_eos(self.vocab), special=True).decode("utf-8", errors="replace"),
            raise_exception=raise_exception,
        )
        return template

    def encode_chat(self, request: GenerateRequest) -> list[int]:
        """The prompt's tokens: the messages through the GGUF's own chat template."""
        import jinja2

        try:
            text = self.template.render(
                messages=[m.model_dump() for m in request.messages], add_generation_prompt=True
            )
        except jinja2.TemplateError as e:
            raise ModelRequestError(f"{self.spec}: the chat template rejected the messages: {e}") from e
        return self.tokenize(text)

    def _grammar(self, schema: dict[str, Any]) -> str:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                self._grammars[key] = json_schema_to_gbnf(key)
            except Exception as e:  # noqa: BLE001 - the converter raises several types
                raise ModelRequestError(f"JSON schema not supported for constrained decoding: {e}") from e
        return self._grammars[key]

    def _sampler(self, request: GenerateRequest, j: int, grammar: str | None) -> Any:
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if grammar is not None:
            g = lib.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            if not g:
                lib.llama_sampler_free(chain)
                raise ModelRequestError("JSON schema not supported for constrained decoding: grammar rejected")
            lib.llama_sampler_chain_add(chain, g)
        if request.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            if request.top_p < 1.0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(request.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(request.temperature))
            if request.seed is not None:
                seed = (request.seed * 1_000_003 + j) % (2**32 - 1)
            else:
                import random

                seed = random.SystemRandom().randrange(2**32 - 1)
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    # -- callers ---------------------------------------------------------------------------
    def prepare(self, request: GenerateRequest, future: Future[GenerateResponse]) -> Job:
        """The request's rows. `ModelRequestError` when the chat template rejects the messages,
        the prompt does not fit a sequence or the JSON schema cannot be used: the caller hears it
        at once and nobody else's request is touched."""
        ids = self.encode_chat(request)
        if len(ids) >= self.context:
            raise ModelRequestError(
                f"{self.spec}: the prompt has {len(ids)} tokens; a sequence holds {self.context} "
                "(context= when loading the model)"
            )
        if len(ids) > self.batch_tokens:
            raise ModelRequestError(
                f"{self.spec}: the prompt has {len(ids)} tokens; one step prefills at most "
                f"{self.batch_tokens} (prefill_tokens= when loading the model)"
            )
        grammar = self._grammar(request.json_schema) if request.json_schema is not None else None
        job = Job(future=future, prompt_tokens=len(ids))
        max_tokens = min(request.max_tokens, self.context - len(ids))
        for j in range(request.n):
            sampler = self._sampler(request, j, grammar)
            stop = [s for s in request.stop if s]
            job.rows.append(_Row(job, ids, max_tokens, stop, sampler, reuse=request.temperature <= 0))
        job.left = len(job.rows)
        return job

    def submit(self, request: GenerateRequest) -> Future[GenerateResponse]:
        future: Future[GenerateResponse] = Future()
        with self._start_lock:  # held while preparing: close() must not free the model meanwhile
            if self._closed:
                raise ModelCallError(f"{self.spec}: the model was closed")
            job = self.prepare(request, future)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="agentmeta-llamacpp", daemon=True)
                self._thread.start()
        self._waiting.put(job)
        return future

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[GenerateResponse]:
        futures = [self.submit(r) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the decode thread (queued and running requests fail with ModelCallError) and free
        the model."""
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._waiting.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        if thread is None or not thread.is_alive():
            self._free()

    def _free(self) -> None:
        lib = self.lib
        if self.ctx:
            lib.llama_batch_free(self.batch)
            lib.llama_free(self.ctx)
            lib.llama_model_free(self.model)
            self.ctx = None

    # -- the decode thread -----------------------------------------------------------------
    def _run(self) -> None:
        pending: list[_Row] = []
        active: list[_Row] = []
        free = list(range(self.max_batch))
        closed = False
        while True:
            try:
                block = not active and not pending
                while True:
                    job = self._waiting.get(block=block)
                    block = False
                    if job is None:
                        closed = True
                        break
                    if job.future.set_running_or_notify_cancel():
                        pending.extend(job.rows)
                    else:
                        for r in job.rows:
                            self.lib.llama_sampler_free(r.sampler)
            except queue.Empty:
                pass
            if closed:
                error = ModelCallError(f"{self.spec}: the model was closed")
                self._fail(active + pending, error, free)
                self._free()
                return
            admitted: list[_Row] = []
            try:
                admitted = self._admit(pending, active, free)
                self._step(active, admitted, free)
            except Exception as e:  # noqa: BLE001 - the backend failed, not one request
                if not isinstance(e, AgentMetaError):
                    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                    e = ModelCallError(f"{self.spec}: decoding failed: {type(e).__name__}: {first}")
                log.warning("%s", e)
                running = {id(r) for r in active}  # rows admitted this step may not be running yet
                hit = list(active) + [r for r in admitted if id(r) not in running]
                failed = {id(r.job) for r in hit}
                self._fail(hit + [r for r in pending if id(r.job) in failed], e, free)
                pending[:] = [r for r in pending if id(r.job) not in failed]
                active.clear()

    def _admit(self, pending: list[_Row], active: list[_Row], free: list[int]) -> list[_Row]:
        """Give waiting rows free sequences while the step's token budget lasts; rows of one
        request are admitted together (their prompt is prefilled once)."""
        admitted: list[_Row] = []
        budget = self.batch_tokens - len(active)
        while pending:
            job = pending[0].job
            rows = [r for r in pending if r.job is job]
            if len(rows) > len(free) or len(rows[0].prompt) > budget:
                if not active and not admitted and len(rows) > self.max_batch:
                    # n > max_batch: run its rows in parts (each part prefills the prompt)
                    rows = rows[: len(free)]
                else:
                    break
            for r in rows:
                pending.remove(r)
                r.pos = len(r.prompt)
                admitted.append(r)
            first = rows[0]
            reuse = self.prompt_cache and first.reuse
            first.seq, first.start = self._take(first.prompt if reuse else [], free)
            for r in rows[1:]:  # they get a copy of the first row's cache after its prefill
                r.seq, _ = self._take([], free)
            budget -= len(first.prompt) - first.start
        return admitted

    def _take(self, prompt: list[int], free: list[int]) -> tuple[int, int]:
        """A free sequence for `prompt` and how many of its first tokens that sequence's cache
        already holds: the one sharing the longest head with it, else the first free one. The last
        prompt token is always computed (its logits give the first completion token)."""
        best, keep = 0, 0
        limit = len(prompt) - 1
        for i, seq in enumerate(free):
            cached = self._cached[seq]
            n, m = 0, min(len(cached), limit)
            while n < m and cached[n] == prompt[n]:
                n += 1
            if n > keep:
                best, keep = i, n
        seq = free.pop(best)
        if len(self._cached[seq]) > keep:  # a free sequence's cache holds exactly its `_cached`
            self.lib.llama_memory_seq_rm(self.memory, seq, keep, -1)
        self._cached[seq] = []
        self.reused_tokens += keep
        return seq, keep

    def _step(self, active: list[_Row], admitted: list[_Row], free: list[int]) -> None:
        """One llama_decode: the new rows' prompts (one per request) and every running row's
        last token; then each row samples its next token."""
        lib = self.lib
        b = self.batch
        n = 0
        for r in active:
            b.token[n], b.pos[n], b.n_seq_id[n], b.seq_id[n][0], b.logits[n] = r.next_token, r.pos, 1, r.seq, 1
            r.out_index = n
            r.pos += 1
            n += 1
        firsts: dict[int, _Row] = {}
        for r in admitted:
            first = firsts.setdefault(id(r.job), r)
            if first is not r:
                continue
            for j in range(r.start, len(r.prompt)):
                b.token[n], b.pos[n], b.n_seq_id[n], b.seq_id[n][0] = r.prompt[j], j, 1, r.seq
                b.logits[n] = j == len(r.prompt) - 1
                n += 1
            r.out_index = n - 1
            self.prefills += 1
        b.n_tokens = n
        if n == 0:
            return
        self.backend_calls += 1
        rc = lib.llama_decode(self.ctx, b)
        if rc != 0:
            raise ModelCallError(f"{self.spec}: llama_decode failed (code {rc}) with {n} tokens in the batch")
        self.backend_steps += 1
        for r in admitted:
            first = firsts[id(r.job)]
            if first is not r:  # the same prompt: its cache is the first row's
                lib.llama_memory_seq_cp(self.memory, first.seq, r.seq, -1, -1)
                r.out_index = first.out_index
            active.append(r)
        done = []
        for r in active:
            tok = int(lib.llama_sampler_sample(r.sampler, self.ctx, r.out_index))
            self._advance(r, tok)
            if r.finish is not None:
                done.append(r)
            else:
                r.next_token = tok
        for r in done:
            active.remove(r)
            self._release(r, free, keep=self.prompt_cache)
            self._finish(r)

    def _advance(self, r: _Row, tok: int) -> None:
        if self.lib.llama_vocab_is_eog(self.vocab, tok):
            r.finish = "stop"
            return
        r.tokens.append(tok)
        r.data += self._piece(tok)
        if r.stop:
            longest = max(len(s.encode()) for s in r.stop)
            tail = bytes(r.data[-(longest + 16) :]).decode("utf-8", errors="ignore")
            cut = cut_at_stop(tail, lambda: bytes(r.data).decode("utf-8", errors="replace"), r.stop)
            if cut is not None:
                r.text = cut
                r.finish = "stop"
                return
        if len(r.tokens) >= r.max_tokens:
            r.finish = "length"

    def _release(self, r: _Row, free: list[int], *, keep: bool = False) -> None:
        """Free the row's sequence; with `keep`, its cache stays for a later prompt to reuse."""
        if r.seq >= 0:
            if keep:  # what was decoded: the prompt and every sampled token fed back so far
                self._cached[r.seq] = r.prompt + r.tokens[: r.pos - len(r.prompt)]
            else:
                self.lib.llama_memory_seq_rm(self.memory, r.seq, -1, -1)
                self._cached[r.seq] = []
            free.append(r.seq)
            if not keep:
                free.sort()  # else oldest first: the least recently used cache is taken first
            r.seq = -1
        if r.sampler is not None:
            self.lib.llama_sampler_free(r.sampler)
            r.sampler = None

    def _finish(self, r: _Row) -> None:
        if r.text is None:
            r.text = bytes(r.data).decode("utf-8", errors="replace")
        job = r.job
        job.left -= 1
        if job.left == 0 and not job.future.done():
            job.future.set_result(job.response())

    def _fail(self, rows: list[_Row], error: BaseException, free: list[int]) -> None:
        for r in rows:
            self._release(r, free)
            if not r.job.future.done():
                r.job.future.set_exception(error)
