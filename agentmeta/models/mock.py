"""A scripted model for fast unit tests. Never the default.

`mock` is scripted in the process that builds it (`outputs=`). `mock/<module>:<function>` names its
script, a function of the request imported by dotted path, so another process (a Ray actor on
another node) builds the same deterministic model from the spec string alone.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence

from agentmeta.errors import ModelCallError, ModelSpecError
from agentmeta.models.base import Provider
from agentmeta.models.types import GenerateRequest, GenerateResponse

Script = Sequence[str] | Callable[[GenerateRequest], str] | None
FailFn = Callable[[GenerateRequest], BaseException | None]


class MockProvider(Provider):
    """Answers from a script: a list of texts (used in order), a function of the request, or an echo.

    `batching=True` makes `Model` route concurrent calls through its batcher, for batching tests.
    `fail` simulates a failing backend: a function of each request returning an exception (or
    None); when it returns one for any request of a batch, `generate_batch` raises it for the whole
    batch, as a real backend would (e.g. `fail=lambda r: ModelCallError("server down")`).
    """

    def __init__(
        self,
        outputs: Script = None,
        *,
        batching: bool = False,
        max_batch: int = 16,
        delay_s: float = 0.0,
        fail: FailFn | None = None,
    ) -> None:
        super().__init__()
        self.spec = "mock"
        self.batching = batching
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.fail = fail
        self._outputs = outputs
        self._index = 0
        self._lock = threading.Lock()
        self._uid = uuid.uuid4().hex
        self._named = False
        self.requests: list[GenerateRequest] = []
        """Every request seen, in order."""

    def identity(self) -> str:
        # each scripted mock answers differently: never share cache entries between instances (not
        # even with a collected one whose id() this instance reuses); a named script is one function
        # of the request, the same in every process
        return self.spec if self._named else f"mock:{self._uid}"

    def _next(self, request: GenerateRequest) -> str:
        if self._outputs is None:
            return "mock: " + request.messages[-1].content
        if callable(self._outputs):
            return self._outputs(request)
        with self._lock:
            if self._index >= len(self._outputs):
                raise ModelCallError(
                    f"mock model ran out of scripted outputs after {len(self._outputs)} replies"
                )
            text = self._outputs[self._index]
            self._index += 1
        return text

    def generate_batch(self, requests: Sequence[GenerateRequest]) -> list[GenerateResponse]:
        import time

        with self._lock:
            self.backend_calls += 1
            self.requests.extend(requests)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail is not None:
            for req in requests:
                exc = self.fail(req)
                if exc is not None:
                    raise exc
        out = []
        for req in requests:
            texts = []
            for _ in range(req.n):
                text = self._next(req)
                for s in req.stop:
                    if s and s in text:
                        text = text[: text.index(s)]
                texts.append(text[: req.max_tokens * 8])
            toks = [max(1, len(t.split())) for t in texts]
            prompt_toks = sum(len(m.content.split()) for m in req.messages)
            out.append(
                GenerateResponse(
                    texts=texts,
                    prompt_tokens=prompt_toks,
                    completion_tokens=toks,
                    finish_reasons=["stop"] * req.n,
                )
            )
        return out


def mock_provider(rest: str, **options: object) -> MockProvider:
    """`mock` (scripted by `outputs=`) or `mock/<module>:<function>`: answers by that function of the
    request, imported by dotted path; the spec alone rebuilds it in another process."""
    if not rest:
        return MockProvider(**options)  # type: ignore[arg-type]
    import importlib

    module, sep, attr = rest.partition(":")
    if not sep or not module or not attr:
        raise ModelSpecError(f"mock/{rest}: expected mock/<module>:<function>, e.g. mock/my_tests.scripts:reply")
    if "outputs" in options:
        raise ModelSpecError(f"mock/{rest} names its script; outputs= is for the plain `mock` spec")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ModelSpecError(f"mock/{rest}: cannot import {attr!r} from {module!r} ({e})") from e
    if not callable(fn):
        raise ModelSpecError(f"mock/{rest}: {module}.{attr} is not a function of the request")
    provider = MockProvider(fn, **options)  # type: ignore[arg-type]
    provider.spec = f"mock/{rest}"
    provider._named = True
    return provider
