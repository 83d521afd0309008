"""Continuous batching for the in-process transformers backend (`hf/...` and the embedded default).

One decode thread per loaded model runs every caller's completions in one batch:

- a request joins at the next decode step (its prompt is prefilled and its rows merged into the
  running batch), and a finished row leaves at once, so nobody waits for the longest completion
  of someone else's batch;
- the key/value cache lives in preallocated buffers (`SlotLayer`): a decode step writes one
  column instead of copying the whole cache, as transformers' growing cache does;
- prompt heads shared by several requests (system prompt, instructions, demonstrations) are
  prefilled once and kept in a small LRU (`HEAD_CACHE`); the n samples of one prompt share one
  prefill;
- only the last prompt position goes through the output layer;
- while few requests decode (one alone, or the tail of a batch; `SPECULATE_ROWS`), greedy rows
  without a grammar are sped up by prompt lookup (`draft_tokens`): the tokens that followed the
  last few tokens' latest earlier occurrence in the prompt or the completion are checked in the
  same forward pass as the next token, and kept as far as they are what greedy decoding chooses.
  Where several rows of a step cost what one costs (bfloat16 weights on CPUs with AMX) it is on
  by default (`Engine.speculate`).

Each row keeps its own sampling settings, seeded generator, stop strings and JSON-schema matcher,
so batching never changes what a request asks for. Greedy outputs equal those of the static
batches this replaced (tests/models/test_engine.py checks them against recorded outputs).

The layout of one batch: rows x columns, every row right-aligned at the last column; a row's
columns before its first token are masked out (attention mask 0); positions are explicit per row,
so merging two batches only pads the narrower on the left.

Models whose cache is not one full-attention layer per block (sliding windows, linear attention)
run in static batches instead (`static_decode`): correct, without the gains above.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from agentmeta.errors import AgentMetaError, ModelCallError
from agentmeta.models.types import FinishReason, GenerateResponse

log = logging.getLogger(__name__)

HEAD_MIN_TOKENS = 16
"""A shared prompt head shorter than this is not worth a prefill of its own."""
HEAD_CACHE = 8
"""How many prompt heads are kept (least recently used dropped first)."""
SPARE_COLUMNS = 128
"""Cache columns allocated ahead so decode steps append in place."""
IDLE_EXIT_S = 2.0
"""A decode thread with nothing to do for this long ends; the next request starts a new one. An
idle thread would keep its CPU thread pool, and with GNU OpenMP the pools of live threads together
holding more threads than there are CPUs make every pool's workers sleep between kernels (a
decode step of another model then takes up to twice as long; see `threads.in_own_thread`)."""


def _torch() -> Any:
    import torch

    return torch


@dataclass
class Row:
    """One completion being decoded."""

    job: Job
    prompt_ids: list[int]
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str]
    generator: Any
    matcher: Any = None
    tokens: list[int] = field(default_factory=list)
    text: str | None = None
    finish: FinishReason | None = None


@dataclass
class Job:
    """One request: its rows (n of them) and the caller's future."""

    future: Future[GenerateResponse]
    prompt_tokens: int
    rows: list[Row] = field(default_factory=list)
    left: int = 0

    def response(self) -> GenerateResponse:
        return GenerateResponse(
            texts=[r.text or "" for r in self.rows],
            prompt_tokens=self.prompt_tokens,
            completion_tokens=[len(r.tokens) for r in self.rows],
            finish_reasons=[r.finish or "length" for r in self.rows],
        )


def cut_at_stop(tail: str, full_text: Callable[[], str], stops: list[str]) -> str | None:
    """The completion's text up to its first stop string, or None while none has appeared.
    `tail` is the text of its last few tokens (where a new stop string must be); `full_text()`
    decodes the whole completion, only once one is there."""
    if not any(s in tail for s in stops):
        return None
    text = full_text()
    hits = [text.index(s) for s in stops if s in text]
    return text[: min(hits)] if hits else None


def _slot_layer_class() -> type:
    from transformers.cache_utils import DynamicLayer

    class SlotLayer(DynamicLayer):
        """A full-attention cache layer over a preallocated buffer: `update` writes the new
        columns in place and hands the model a view, instead of concatenating a new tensor.
        The layer's columns are the first `width` of the buffer."""

        def __init__(self) -> None:
            super().__init__()
            self.kbuf: Any = None
            self.vbuf: Any = None
            self.width = 0

        def load(self, keys: Any, values: Any, spare: int = SPARE_COLUMNS) -> None:
            """Copy `keys`/`values` into a new buffer with `spare` free columns after them."""
            b, h, w, d = keys.shape
            kbuf = keys.new_empty((b, h, w + spare, d))
            vbuf = values.new_empty((b, h, w + spare, d))
            kbuf[:, :, :w] = keys
            vbuf[:, :, :w] = values
            self.adopt(kbuf, vbuf, w)

        def adopt(self, kbuf: Any, vbuf: Any, width: int) -> None:
            """Take buffers whose first `width` columns hold this layer's cache (the rest spare)."""
            self.kbuf, self.vbuf = kbuf, vbuf
            self._view(width)
            self.device = kbuf.device
            self.is_initialized = True

        def _view(self, w: int) -> None:
            self.width = w
            self.keys = self.kbuf[:, :, :w]
            self.values = self.vbuf[:, :, :w]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if self.kbuf is None:
                self.load(key_states, value_states)
                return self.keys, self.values
            n = key_states.shape[-2]
            w = self.width + n
            if w > self.kbuf.shape[-2]:
                self.load(self.keys, self.values, spare=max(SPARE_COLUMNS, w // 2) + n)
            self.kbuf[:, :, self.width : w] = key_states
            self.vbuf[:, :, self.width : w] = value_states
            self._view(w)
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.width

    return SlotLayer


_SLOT_LAYER: type | None = None


def slot_layer() -> Any:
    global _SLOT_LAYER
    if _SLOT_LAYER is None:
        _SLOT_LAYER = _slot_layer_class()
    return _SLOT_LAYER()


@dataclass
class _Batch:
    """Rows being decoded together, with their cache, mask, next positions and next-token logits."""

    rows: list[Row]
    layers: list[Any]  # SlotLayer per model layer
    mask: Any  # [B, W] long
    pos: Any  # [B] long: position of each row's next token
    logits: Any  # [B, V] float: each row's next-token logits

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])


SPECULATE_ROWS = 8
"""Prompt-lookup drafts are checked while few rows decode (the tail of a batch): each row gets
`SPECULATE_ROWS // rows - 1` drafts at most (7 alone, 3 for two rows, 1 for three to eight), so a
step stays near 8 rows, which costs about what one row costs in bfloat16 on a CPU with AMX."""
SPECULATE_NGRAM = (3, 2, 1)
"""The lengths of the completion's tail that prompt lookup searches for, longest first."""


def draft_tokens(context: list[int], k: int, ngrams: tuple[int, ...] = SPECULATE_NGRAM) -> list[int]:
    """Up to `k` tokens that followed the latest earlier occurrence of the last n tokens of
    `context` (n from `ngrams`, longest first); [] when none recurs. The drafts only save time:
    each is kept only if it is the token greedy decoding picks there."""
    if k <= 0:
        return []
    size = len(context)
    for n in ngrams:
        if size <= n:
            continue
        tail = context[size - n :]
        for start in range(size - n - 1, -1, -1):
            if context[start : start + n] == tail:
                return context[start + n : start + n + k]
    return []


SMALL_ROWS = 64
"""Up to this many rows, a linear layer on CPU runs as `W @ x.T`, transposed back."""


def _padded_rows(rows: int, bfloat16: bool = False) -> int:
    """The row count to run a small GEMM at: CPU GEMM kernels are several times slower for odd
    counts (15 rows took 2.5x as long as 16 here), so 3-4 rows run as 4 and more as a multiple of 8;
    in bfloat16 (oneDNN) 8 rows cost about what one does, so always a multiple of 8 there."""
    if bfloat16:
        return -(-rows // 8) * 8
    if rows <= 2:
        return rows
    return 4 if rows <= 4 else -(-rows // 8) * 8


def rows_product(flat: Any, weight: Any, bias: Any = None) -> Any:
    """`flat @ weight.T (+ bias)` for the few rows [rows, in] of a decode step on CPU: the GEMM
    oriented as `weight @ flat.T` over the rows padded with zeros to a count the kernels like
    (`_padded_rows`), transposed back to [rows, out], contiguous."""
    torch = _torch()
    rows = flat.shape[0]
    padded = _padded_rows(rows, flat.dtype == torch.bfloat16)
    if padded != rows:
        flat = torch.cat([flat, flat.new_zeros((padded - rows, flat.shape[1]))])
    out = torch.mm(weight, flat.t()) if bias is None else torch.addmm(bias.unsqueeze(1), weight, flat.t())
    return out[:, :rows].t().contiguous()


def _small_rows_linear(self: Any, x: Any) -> Any:
    """`nn.Linear.forward`, faster for the few rows of a decode step on CPU: the GEMM oriented as
    `W @ x.T` (the weight as the left operand) over the rows padded with zeros to a count the
    kernels like (`_padded_rows`), about 30% faster than `x @ W.T` at 16 rows and up to 2x at odd
    counts, with the same result (checked bit for bit by the greedy reference test)."""
    import torch.nn.functional as F

    rows = x.numel() // x.shape[-1] if x.dim() else 0
    if 0 < rows <= SMALL_ROWS and x.dtype == self.weight.dtype and not x.requires_grad:
        out = rows_product(x.reshape(rows, x.shape[-1]), self.weight, self.bias)
        return out.view(*x.shape[:-1], self.weight.shape[0])
    return F.linear(x, self.weight, self.bias)


def tune_for_cpu(model: Any) -> int:
    """Give the model's plain linear layers (not subclasses: LoRA wrappers keep theirs and call
    the base layer) the small-rows forward; the number of layers changed."""
    import types

    torch = _torch()
    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = types.MethodType(_small_rows_linear, module)
            n += 1
    return n


def supports_continuous(model: Any) -> bool:
    """Whether the model's cache is one full-attention layer per block (what `SlotLayer` holds)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "is_encoder_decoder", False):
        return False
    types = getattr(cfg, "layer_types", None)
    if types:
        return all(t == "full_attention" for t in types)
    return not getattr(cfg, "sliding_window", None) or getattr(cfg, "use_sliding_window", True) is False


def cache_keyword(model: Any) -> str:
    """`cache` (transformers >= 5.20), or `past_key_values` where the model still takes that."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class Engine:
    """The decode thread of one loaded model. `submit(job)` queues a prepared request; its future
    resolves when all its rows finish. `provider` gives the model, tokenizer and token sets."""

    def __init__(
        self, provider: Any, *, max_batch: int, speculate: int = 0, on_step: Callable[[], None] | None = None
    ) -> None:
        self.p = provider
        self.max_batch = max_batch
        self.speculate = speculate
        """Most draft tokens a greedy row gets per step while few rows decode (0: off)."""
        self.continuous = supports_continuous(provider.model)
        self.cache_kw = cache_keyword(provider.model)
        self.n_layers = int(provider.model.config.num_hidden_layers)
        from agentmeta.models.lean import LeanLlama, fits

        self.lean = LeanLlama(provider.model) if self.continuous and fits(provider.model) else None
        """The lean forward pass where it fits the model (bfloat16 Llama on CPU), else None."""
        self._waiting: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._pending: list[Row] = []
        self._heads: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.prefills = 0
        """Prefill passes run (one per admitted group of prompts)."""
        self.head_hits = 0
        """Prompt tokens not prefilled again because their head was already computed."""
        self.drafted = 0
        """Draft tokens checked by prompt lookup."""
        self.accepted = 0
        """Draft tokens kept (each one a decode step saved)."""

    # -- callers ---------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._start_lock:  # queued under the lock: an idle thread ends only with nothing queued
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="agentmeta-decode", daemon=True)
                self._thread.start()
            self._waiting.put(job)

    def close(self) -> None:
        """Stop the decode thread (requests still queued or decoding fail with ModelCallError);
        a later request starts it again."""
        with self._start_lock:
            thread, self._thread = self._thread, None
            if thread is None or not thread.is_alive():
                return
            self._waiting.put(None)
        if thread is not threading.current_thread():
            thread.join(timeout=10)

    # -- the decode thread -----------------------------------------------------------------
    def _run(self) -> None:
        torch = _torch()
        batch: _Batch | None = None
        with torch.inference_mode():
            while True:
                block = batch is None and not self._pending
                taken = self._take(block=block, timeout=IDLE_EXIT_S)
                if taken is None:  # idle: the thread ends (a later request starts another)
                    with self._start_lock:
                        if self._waiting.empty():
                            if self._thread is threading.current_thread():
                                self._thread = None
                            return
                    continue
                if not taken:
                    self._fail(
                        batch.rows if batch else [], ModelCallError(f"{self.p.spec}: the model was closed")
                    )
                    self._fail(self._pending, ModelCallError(f"{self.p.spec}: the model was closed"))
                    return
                if not self.continuous:
                    rows, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                    self._guard(rows, self._static, rows)
                    continue
                room = self.max_batch - (len(batch.rows) if batch else 0)
                if room > 0 and self._pending:
                    rows, self._pending = self._pending[:room], self._pending[room:]
                    new = self._guard(rows, self._admit, rows)
                    if new is not None:
                        batch = new if batch is None else self._merge(batch, new)
                if batch is None:
                    continue
                batch = self._guard(batch.rows, self._step, batch)

    def _take(self, *, block: bool, timeout: float | None = None) -> bool | None:
        """Move queued jobs' rows to the pending list; False once closed, None when it was to
        wait (`block`) and nothing came within `timeout` seconds."""
        while True:
            try:
                job = self._waiting.get(block=block, timeout=timeout if block else None)
            except queue.Empty:
                return None if block else True
            if job is None:
                return False
            block = False
            if job.future.set_running_or_notify_cancel():
                self._pending.extend(job.rows)

    def _guard(self, rows: list[Row], fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn(*args); on failure every row in `rows` (their whole requests) fails with a ModelCallError."""
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - the backend failed, not one request
            if not isinstance(e, AgentMetaError):
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                e = ModelCallError(f"{self.p.spec}: decoding failed: {type(e).__name__}: {first}")
            log.warning("%s", e)
            self._fail(rows, e)
            return None

    def _fail(self, rows: list[Row], error: BaseException) -> None:
        for job in {id(r.job): r.job for r in rows}.values():
            if not job.future.done():
                job.future.set_exception(error)
        failed = {id(r.job) for r in rows}
        self._pending = [r for r in self._pending if id(r.job) not in failed]

    def _finish(self, row: Row) -> None:
        if row.text is None:
            row.text = self.p.tokenizer.decode(row.tokens, skip_special_tokens=True)
        if row.finish is None:
            row.finish = "length"
        job = row.job
        job.left -= 1
        if job.left == 0 and not job.future.done():
            job.future.set_result(job.response())

    # -- prefill ---------------------------------------------------------------------------
    def _admit(self, rows: list[Row]) -> _Batch:
        """Prefill the prompts of `rows` (each distinct prompt once, shared heads once) into a batch."""
        torch = _torch()
        distinct: dict[tuple[int, ...], int] = {}
        for r in rows:
            distinct.setdefault(tuple(r.prompt_ids), len(distinct))
        prompts = list(distinct)
        groups: dict[tuple[int, ...] | None, list[int]] = {}
        heads: dict[tuple[int, ...], list[tuple[Any, Any]]] = {}  # held here: the LRU may drop one
        for i, prompt in enumerate(prompts):
            head = self._head_for(prompt, prompts)
            if head is not None:
                heads[head] = self._heads[head]
            groups.setdefault(head, []).append(i)
        parts: list[tuple[list[int], _Batch]] = []
        for head, members in groups.items():
            kv = heads[head] if head is not None else None
            parts.append((members, self._prefill([prompts[i] for i in members], head, kv)))
        batch = parts[0][1]
        order = list(parts[0][0])
        for members, part in parts[1:]:
            batch = self._merge(batch, part)
            order.extend(members)
        self.p.backend_calls += 1
        where = {p: k for k, p in enumerate(order)}  # prompt index -> row of the prefilled batch
        idx = torch.tensor([where[distinct[tuple(r.prompt_ids)]] for r in rows], device=self.p.device)
        return self._select(batch, idx, rows)

    def _head_for(self, prompt: tuple[int, ...], others: list[tuple[int, ...]]) -> tuple[int, ...] | None:
        """The longest cached head of `prompt`, else a new head it shares with another prompt
        admitted with it (computed and cached), else None."""
        best: tuple[int, ...] | None = None
        for head in self._heads:
            if (
                len(head) < len(prompt)
                and prompt[: len(head)] == head
                and (best is None or len(head) > len(best))
            ):
                best = head
        if best is not None:
            self._heads.move_to_end(best)
            return best
        shared = 0
        for other in others:
            if other == prompt:
                continue
            n = 0
            for a, b in zip(prompt, other, strict=False):
                if a != b:
                    break
                n += 1
            shared = max(shared, min(n, len(prompt) - 1, len(other) - 1))
        if shared < HEAD_MIN_TOKENS:
            return None
        head = prompt[:shared]
        self._heads[head] = self._compute_head(list(head))
        while len(self._heads) > HEAD_CACHE:
            self._heads.popitem(last=False)
        return head

    def _compute_head(self, ids: list[int]) -> list[tuple[Any, Any]]:
        torch = _torch()
        cache = self._new_cache()
        dev = self.p.device
        self._forward(
            torch.tensor([ids], device=dev),
            torch.ones((1, len(ids)), dtype=torch.long, device=dev),
            torch.arange(len(ids), device=dev).unsqueeze(0),
            cache,
        )
        self.prefills += 1
        return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]

    def _prefill(
        self, prompts: list[tuple[int, ...]], head: tuple[int, ...] | None, kv: list[tuple[Any, Any]] | None
    ) -> _Batch:
        torch = _torch()
        dev = self.p.device
        b = len(prompts)
        start = len(head) if head is not None else 0
        tails = [p[start:] for p in prompts]
        width = max(len(t) for t in tails)
        ids = torch.full((b, width), self.p.pad_id, dtype=torch.long)
        mask = torch.zeros((b, start + width), dtype=torch.long)
        positions = torch.full((b, width), start, dtype=torch.long)
        mask[:, :start] = 1
        for k, tail in enumerate(tails):
            n = len(tail)
            ids[k, width - n :] = torch.tensor(tail, dtype=torch.long)
            mask[k, start + width - n :] = 1
            positions[k, width - n :] = torch.arange(start, start + n)
        cache = self._new_cache()
        if head is not None and kv is not None:
            for layer, (k, v) in zip(cache.layers, kv, strict=True):
                layer.load(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1))
            self.head_hits += start * b
        mask, ids, positions = mask.to(dev), ids.to(dev), positions.to(dev)
        logits = self._forward(ids, mask, positions, cache)
        self.prefills += 1
        pos = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=dev)
        return _Batch(rows=[], layers=list(cache.layers), mask=mask, pos=pos, logits=logits)

    def _new_cache(self, layers: list[Any] | None = None) -> Any:
        """A cache over `layers` (the running batch's), or over empty ones."""
        from transformers.cache_utils import Cache

        return Cache(layers=layers if layers is not None else [slot_layer() for _ in range(self.n_layers)])

    def _forward(self, ids: Any, mask: Any, positions: Any, cache: Any, keep: int = 1) -> Any:
        """The next-token logits after the last position ([B, V]), or after each of the last
        `keep` positions ([B, keep, V])."""
        if self.lean is not None:
            logits = self.lean(ids, mask, positions, cache.layers, keep)
            return logits[:, -1, :] if keep == 1 else logits
        out = self.p.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=keep,
            **{self.cache_kw: cache},
        )
        return out.logits[:, -1, :].float() if keep == 1 else out.logits[:, -keep:, :].float()

    # -- batch surgery ---------------------------------------------------------------------
    def _merge(self, a: _Batch, b: _Batch) -> _Batch:
        """One batch of a's rows then b's, the narrower padded on the left (one copy of each cache,
        into buffers with spare columns)."""
        torch = _torch()
        w = max(a.width, b.width)
        na = len(a.pos)
        layers = []
        for la, lb in zip(a.layers, b.layers, strict=True):
            ka = la.keys
            shape = (na + lb.keys.shape[0], ka.shape[1], w + SPARE_COLUMNS, ka.shape[3])
            keys, values = ka.new_zeros(shape), ka.new_zeros(shape)
            keys[:na, :, w - a.width : w] = ka
            keys[na:, :, w - b.width : w] = lb.keys
            values[:na, :, w - a.width : w] = la.values
            values[na:, :, w - b.width : w] = lb.values
            layer = slot_layer()
            layer.adopt(keys, values, w)
            layers.append(layer)
        mask = a.mask.new_zeros((na + b.mask.shape[0], w))
        mask[:na, w - a.width :] = a.mask
        mask[na:, w - b.width :] = b.mask
        return _Batch(
            rows=a.rows + b.rows,
            layers=layers,
            mask=mask,
            pos=torch.cat([a.pos, b.pos]),
            logits=torch.cat([a.logits, b.logits]),
        )

    def _select(self, batch: _Batch, idx: Any, rows: list[Row]) -> _Batch:
        """The batch of rows `idx` (a row may repeat: n samples of one prompt), without the
        leading columns no selected row uses (one copy of the selected rows' buffers)."""
        mask = batch.mask.index_select(0, idx)
        used = mask.any(dim=0).nonzero()
        first = int(used[0]) if used.numel() else 0
        mask = mask[:, first:]
        layers = []
        for old in batch.layers:
            layer = slot_layer()  # the selected rows' columns from `first` on, spare ones included
            layer.adopt(
                old.kbuf[:, :, first:].index_select(0, idx), old.vbuf[:, :, first:].index_select(0, idx), old.width - first
            )
            layers.append(layer)
        return _Batch(
            rows=rows,
            layers=layers,
            mask=mask.contiguous(),
            pos=batch.pos.index_select(0, idx),
            logits=batch.logits.index_select(0, idx),
        )

    # -- decoding --------------------------------------------------------------------------
    def _step(self, batch: _Batch) -> _Batch | None:
        """Choose every row's next token; finished rows leave; one forward pass for the rest."""
        torch = _torch()
        chosen = self.p.choose(batch.rows, batch.logits)
        keep: list[int] = []
        for k, r in enumerate(batch.rows):
            self.p.advance(r, chosen[k])
            if r.finish is None:
                keep.append(k)
            else:
                self._finish(r)
        if not keep:
            return None
        dev = self.p.device
        if len(keep) < len(batch.rows):
            idx = torch.tensor(keep, device=dev)
            batch = self._select(batch, idx, [batch.rows[k] for k in keep])
            chosen = [chosen[k] for k in keep]
        if self.speculate > 0 and len(batch.rows) <= SPECULATE_ROWS:
            # a step of up to `SPECULATE_ROWS` rows and their drafts costs about one of one row
            k = min(self.speculate, max(1, SPECULATE_ROWS // len(batch.rows) - 1))
            drafts = [self._drafts(r, k) for r in batch.rows]
            if any(drafts):
                return self._speculative_step(batch, chosen, drafts)
        cache = self._new_cache(batch.layers)
        mask = torch.cat([batch.mask, batch.mask.new_ones((batch.mask.shape[0], 1))], dim=1)
        step_ids = torch.tensor(chosen, dtype=torch.long, device=dev).unsqueeze(1)
        batch.logits = self._forward(step_ids, mask, batch.pos.unsqueeze(1), cache)
        batch.mask = mask
        batch.pos = batch.pos + 1
        self.p.backend_steps += 1
        return batch

    def _drafts(self, r: Row, k: int) -> list[int]:
        """Up to `k` prompt-lookup drafts for a greedy row without a grammar, within its token limit."""
        if r.temperature > 0 or r.matcher is not None:
            return []
        room = r.max_tokens - len(r.tokens) - 1
        return draft_tokens(r.prompt_ids + r.tokens, min(k, room))

    def _speculative_step(self, batch: _Batch, chosen: list[int], drafts: list[list[int]]) -> _Batch | None:
        """One forward pass over each row's chosen token and its drafts (rows without drafts, or
        with fewer, padded); a row's drafts are kept while each is the greedy choice after the ones
        before it. Columns no row kept are cut from the cache; a column one row kept and another
        did not is masked out for the other. Each row's next logits are those after its last
        kept token."""
        torch = _torch()
        dev = self.p.device
        rows = batch.rows
        t = 1 + max(len(d) for d in drafts)
        w = batch.width
        cache = self._new_cache(batch.layers)
        mask = torch.cat([batch.mask, batch.mask.new_ones((len(rows), t))], dim=1)
        ids = torch.tensor(
            [[c, *d, *[self.p.pad_id] * (t - 1 - len(d))] for c, d in zip(chosen, drafts, strict=True)],
            dtype=torch.long,
            device=dev,
        )
        positions = (batch.pos.unsqueeze(1) + torch.arange(t, device=dev)).long()
        logits = self._forward(ids, mask, positions, cache, keep=t)
        greedy = logits.argmax(dim=-1).tolist()
        kept: list[int] = []
        for r, d, g in zip(rows, drafts, greedy, strict=True):
            self.drafted += len(d)
            n = 0
            for i, token in enumerate(d):
                if g[i] != token:
                    break
                n += 1
                self.p.advance(r, token)
                if r.finish is not None:
                    break
            kept.append(n)
        self.accepted += sum(kept)
        self.p.backend_steps += 1
        cut = t - 1 - max(kept)  # trailing columns no row kept
        for layer in batch.layers:
            layer._view(layer.width - cut)
        mask = mask[:, : w + t - cut]
        for k, n in enumerate(kept):
            if n < t - 1 - cut:
                mask[k, w + 1 + n :] = 0
        idx = torch.tensor(kept, device=dev)
        batch.mask = mask
        batch.pos = batch.pos + 1 + idx
        batch.logits = logits[torch.arange(len(rows), device=dev), idx]
        live = [k for k, r in enumerate(rows) if r.finish is None]
        for r in rows:
            if r.finish is not None:
                self._finish(r)
        if not live:
            return None
        if len(live) < len(rows):
            batch = self._select(batch, torch.tensor(live, device=dev), [rows[k] for k in live])
        return batch

    def _static(self, rows: list[Row]) -> None:
        """A static batch for models `SlotLayer` cannot hold: decode until every row finishes."""
        self.p.static_decode(rows, self.cache_kw)
        for r in rows:
            self._finish(r)
