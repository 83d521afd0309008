"""The provider protocol, the `Model` front every caller uses, and the request batcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pydantic import ValidationError

from agentmeta.errors import ModelCallError
from agentmeta.models.cache import CallCache
from agentmeta.models.types import GenerateRequest, GenerateResponse, Message, Usage, request_error

log = logging.getLogger(__name__)


class Provider:
    """A backend. Subclasses implement `generate_batch`.

    `batching = True` means the backend runs several requests faster together than one by one
    (the embedded model pads them into one forward pass), so `Model` gathers concurrent
    callers' requests for it. Servers batch on their side and keep `batching = False`.
    """

    spec: str = ""
    batching: bool = False
    continuous: bool = False
    """The backend schedules concurrent requests itself (continuous batching): `Model` hands each
    request to its `submit` instead of gathering batches."""
    max_batch: int = 16

    def __init__(self) -> None:
        self.backend_calls = 0
        """How many times the backend was run (one per batch)."""

    def identity(self) -> str:
        """What the call cache keys on: everything that changes the outputs besides the request."""
        return self.spec

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[GenerateResponse]:
        raise NotImplementedError

    def submit(self, request: GenerateRequest) -> Future[GenerateResponse]:
        """Queue one request (providers with `continuous = True`)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (threads, connections, GPU memory)."""


class Batcher:
    """Gathers requests from concurrent callers into batches for one provider.

    A worker thread takes the first waiting request, waits up to `max_wait_s` for more (up to
    `provider.max_batch`), runs them in one backend call and resolves each caller's future. When
    the backend call fails, the batch is split and run again until each failure is pinned to its
    own request, so one bad request never fails the other callers of its batch.
    """

    def __init__(self, provider: Provider, max_wait_s: float = 0.01) -> None:
        self.provider = provider
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[tuple[GenerateRequest, Future[GenerateResponse]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []
        """Sizes of the batches gathered (before any split to isolate a failure)."""
        self.split_batches = 0
        """How many failed batches were split in halves and run again."""

    def submit(self, request: GenerateRequest) -> Future[GenerateResponse]:
        fut: Future[GenerateResponse] = Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="agentmeta-batcher", daemon=True)
                self._thread.start()
        self._queue.put((request, fut))
        return fut

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            rows = item[0].n
            deadline = time.monotonic() + self.max_wait_s
            while rows < self.provider.max_batch:
                timeout = deadline - time.monotonic()
                try:
                    nxt = (
                        self._queue.get(timeout=max(timeout, 0.0))
                        if timeout > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
                rows += nxt[0].n
            self._execute(batch)

    def _execute(self, batch: list[tuple[GenerateRequest, Future[GenerateResponse]]]) -> None:
        live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        self.batch_sizes.append(len(live))
        self._run_isolated(live)

    def _run_isolated(self, live: list[tuple[GenerateRequest, Future[GenerateResponse]]]) -> None:
        """Run `live` in one backend call; if it fails, split it in halves and run each again.

        A backend fails the whole batch when one request is bad (a schema it cannot compile, a
        prompt too long), so only a batch of one hands its exception to its caller: one poisoned
        request costs about log2(batch) extra backend calls and never fails its neighbours.
        """
        try:
            responses = self.provider.generate_batch([r for r, _ in live])
            if len(responses) != len(live):
                raise ModelCallError(
                    f"{self.provider.spec}: backend returned {len(responses)} responses "
                    f"for {len(live)} requests"
                )
        except Exception as e:  # noqa: BLE001 - every caller must hear about its failure
            if len(live) == 1:
                live[0][1].set_exception(e)
                return
            self.split_batches += 1
            log.info(
                "%s: a batch of %d failed (%s: %s); running it again in halves to isolate the failure",
                self.provider.spec,
                len(live),
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
            )
            mid = len(live) // 2
            self._run_isolated(live[:mid])
            self._run_isolated(live[mid:])
            return
        except BaseException as e:  # noqa: BLE001 - not an error of a request: no split, no caller hangs
            for _, f in live:
                f.set_exception(e)
            return
        for (_, f), resp in zip(live, responses, strict=True):
            f.set_result(resp)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)


PromptLike = str | Sequence[Message] | Sequence[dict[str, str]] | GenerateRequest


class Model:
    """What every caller holds: one provider, plus the call cache, the batcher and usage counts.

    `generate` is thread-safe; concurrent callers of a batching provider share batches.
    """

    def __init__(
        self, provider: Provider, *, cache: CallCache | None = None, batching: bool | None = None
    ) -> None:
        self.provider = provider
        self.spec = provider.spec
        self.cache = cache
        self.usage = Usage()
        self._usage_lock = threading.Lock()
        use_batcher = provider.batching if batching is None else batching
        self._batcher = Batcher(provider) if use_batcher and not provider.continuous else None
        self._serial = threading.Lock()  # without a batcher, one backend call at a time
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"Model({self.spec!r})"

    @staticmethod
    def _request(prompt: PromptLike, kwargs: dict[str, Any]) -> GenerateRequest:
        """The request for `prompt` plus sampling kwargs, validated; `ModelRequestError` if invalid."""
        try:
            if isinstance(prompt, GenerateRequest):
                if not kwargs:
                    return prompt
                # model_copy(update=...) would not validate: rebuild from the merged fields
                return GenerateRequest(**{**prompt.model_dump(), **kwargs})
            return GenerateRequest.build(prompt, **kwargs)  # type: ignore[arg-type]
        except ValidationError as e:
            raise request_error(e) from e

    def generate(self, prompt: PromptLike, **kwargs: Any) -> GenerateResponse:
        """Complete `prompt` (a string, chat messages or a `GenerateRequest`); kwargs set sampling fields."""
        request = self._request(prompt, kwargs)
        return self._generate(request)

    async def agenerate(self, prompt: PromptLike, **kwargs: Any) -> GenerateResponse:
        """Async `generate`; concurrent tasks are batched like threads."""
        request = self._request(prompt, kwargs)
        cached = self._cache_get(request)
        if cached is not None:
            return cached
        if self._batcher is not None or self.provider.continuous:
            start = time.perf_counter()
            submit = self._batcher.submit if self._batcher is not None else self.provider.submit
            resp = await asyncio.wrap_future(submit(request))
            return self._finish(request, resp, start)
        return await asyncio.to_thread(self._generate, request)

    def generate_many(self, prompts: Sequence[PromptLike], **kwargs: Any) -> list[GenerateResponse]:
        """Complete many prompts concurrently (batched where the backend batches); order is kept."""
        requests = [self._request(p, kwargs) for p in prompts]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="agentmeta-call")
        return list(self._pool.map(self._generate, requests))

    def _generate(self, request: GenerateRequest) -> GenerateResponse:
        cached = self._cache_get(request)
        if cached is not None:
            return cached
        start = time.perf_counter()
        if self._batcher is not None:
            resp = self._batcher.submit(request).result()
        elif self.provider.continuous:
            resp = self.provider.submit(request).result()
        else:
            with self._serial if self.provider.batching else contextlib.nullcontext():
                resps = self.provider.generate_batch([request])
            if len(resps) != 1:
                raise ModelCallError(f"{self.spec}: backend returned {len(resps)} responses for 1 request")
            resp = resps[0]
        return self._finish(request, resp, start)

    def _finish(self, request: GenerateRequest, resp: GenerateResponse, start: float) -> GenerateResponse:
        resp = resp.model_copy(update={"latency_s": time.perf_counter() - start, "model": self.spec})
        if self.cache is not None and request.seed is not None:
            self.cache.put(self.provider.identity(), request, resp)
        with self._usage_lock:
            self.usage.add(resp)
        return resp

    def _cache_get(self, request: GenerateRequest) -> GenerateResponse | None:
        if self.cache is None or request.seed is None:
            return None
        hit = self.cache.get(self.provider.identity(), request)
        if hit is not None:
            with self._usage_lock:
                self.usage.add(hit)
        return hit

    def add_usage(self, usage: Usage) -> None:
        """Count calls made for this model elsewhere (by the same spec on Ray actors), so budgets
        and totals read from `usage` include them."""
        with self._usage_lock:
            self.usage.merge(usage)

    @property
    def backend_calls(self) -> int:
        return self.provider.backend_calls

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.provider.close()
