"""Any OpenAI-compatible server: `vllm serve`, `transformers serve`, OpenAI itself.

Plain HTTP with httpx; retries with exponential backoff on connection errors, timeouts, 408,
409, 429 and 5xx; then `ModelCallError` naming the URL. Any other 4xx rejects the request itself
(`ModelRequestError`: a bad schema, a prompt longer than the context), except 401, 403, 404 and
407, which say the setup is wrong (key, URL, model name) and raise `ModelCallError`. Servers batch
continuously on their side, so requests are sent concurrently, one HTTP call each.

The cache identity is the base URL, the model name and `cache_tag`: the served weights cannot be
fingerprinted from here, so change `cache_tag` when the model behind the URL changes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from agentmeta import config
from agentmeta.errors import ConfigError, ModelCallError, ModelRequestError
from agentmeta.models.base import Provider
from agentmeta.models.types import FinishReason, GenerateRequest, GenerateResponse

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
_SETUP_STATUS = {401, 403, 404, 407}
"""4xx answers that blame the setup (key, URL, model name), not the request."""


def _normalize_base(url: str) -> str:
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"base URL must start with http:// or https://, got {url!r}")
    return url if url.endswith("/v1") else url + "/v1"


class OpenAIProvider(Provider):
    """Chat completions over HTTP. `base_url` or `AGENTMETA_BASE_URL` / `OPENAI_BASE_URL`.

    `cache_tag` is part of the call cache's identity: the server's weights cannot be fingerprinted
    from here, so set a new tag (e.g. the checkpoint name) when the model behind the URL changes.
    """

    batching = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 4,
        backoff_s: float = 0.5,
        max_concurrency: int = 32,
        cache_tag: str = "",
    ) -> None:
        super().__init__()
        url = base_url or config.base_url()
        if not url:
            raise ConfigError(
                f"openai/{model} needs a server: pass base_url= or set AGENTMETA_BASE_URL "
                "(e.g. http://127.0.0.1:8000/v1)"
            )
        self.model = model
        self.base_url = _normalize_base(url)
        self.spec = f"openai/{model}"
        self.retries = retries
        self.cache_tag = cache_tag
        self.backoff_s = backoff_s
        key = api_key or os.environ.get("AGENTMETA_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            headers={"Authorization": f"Bearer {key}"},
            limits=httpx.Limits(max_connections=max_concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="agentmeta-http")

    def identity(self) -> str:
        ident = f"openai:{self.base_url}:{self.model}"
        return ident + (f":{self.cache_tag}" if self.cache_tag else "")

    def _payload(self, request: GenerateRequest, n: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.model_dump() for m in request.messages],
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
        }
        if n > 1:
            body["n"] = n
        if request.stop:
            body["stop"] = request.stop
        if request.seed is not None:
            body["seed"] = request.seed
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema, "strict": True},
            }
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = self._client.post("/chat/completions", json=body)
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}"
                log.warning("%s: attempt %d failed: %s", url, attempt + 1, last)
                continue
            if resp.status_code in _RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                log.warning("%s: attempt %d failed: %s", url, attempt + 1, last)
                continue
            if resp.status_code >= 400:
                said = " ".join(resp.text[:300].split())
                if resp.status_code in _SETUP_STATUS or resp.status_code >= 500:
                    raise ModelCallError(f"{url} answered HTTP {resp.status_code}: {said}")
                # the server rejected this request: the caller's fault
                raise ModelRequestError(f"{url} rejected the request: HTTP {resp.status_code}: {said}")
            try:
                return dict(resp.json())
            except ValueError as e:
                raise ModelCallError(f"{url} answered with non-JSON: {resp.text[:200]}") from e
        raise ModelCallError(f"no answer from {url} after {self.retries + 1} attempts ({last})")

    def _one(self, request: GenerateRequest) -> GenerateResponse:
        texts: list[str] = []
        finish: list[FinishReason] = []
        completion_tokens: list[int] = []
        prompt_tokens = 0
        while len(texts) < request.n:  # some servers ignore n > 1: ask again for the rest
            data = self._post(self._payload(request, request.n - len(texts)))
            choices = data.get("choices") or []
            if not choices:
                raise ModelCallError(f"{self.base_url} returned no choices: {str(data)[:200]}")
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or prompt_tokens)
            total_completion = int(usage.get("completion_tokens") or 0)
            for c in choices[: request.n - len(texts)]:
                texts.append((c.get("message") or {}).get("content") or "")
                fr = c.get("finish_reason")
                finish.append("length" if fr == "length" else "stop")
                completion_tokens.append(total_completion // max(len(choices), 1))
        return GenerateResponse(
            texts=texts,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reasons=finish,
        )

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[GenerateResponse]:
        self.backend_calls += 1
        if len(requests) == 1:
            return [self._one(requests[0])]
        return list(self._pool.map(self._one, requests))

    def close(self) -> None:
        self._client.close()
        self._pool.shutdown(wait=False)
