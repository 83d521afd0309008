"""Model front, batcher, call cache and spec errors, on the mock provider."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
from pydantic import ValidationError

from agentmeta import get_model
from agentmeta.errors import ConfigError, ModelCallError, ModelSpecError
from agentmeta.models import CallCache, GenerateRequest, Model
from agentmeta.models.mock import MockProvider


def test_request_validation_and_build():
    req = GenerateRequest.build("hello", max_tokens=5)
    assert req.messages[0].role == "user" and req.messages[0].content == "hello"
    with pytest.raises(ValidationError):
        GenerateRequest(messages=[])
    with pytest.raises(ValidationError):
        GenerateRequest.build("x", n=0)
    with pytest.raises(ValidationError):
        GenerateRequest.build([{"role": "robot", "content": "x"}])


def test_mock_script_order_usage_and_exhaustion():
    m = get_model("mock", outputs=["first answer", "second"])
    assert m.generate("a").text == "first answer"
    assert m.generate("b").text == "second"
    assert m.usage.calls == 2
    assert m.usage.completion_tokens == 3
    with pytest.raises(ModelCallError, match="ran out"):
        m.generate("c")


def test_stop_strings_cut_mock_output():
    m = get_model("mock", outputs=["keep this STOP drop this"])
    assert m.generate("q", stop=["STOP"]).text == "keep this "


def test_concurrent_callers_share_batches_and_get_their_own_answers():
    provider = MockProvider(lambda r: "re:" + r.messages[-1].content, batching=True, delay_s=0.05)
    model = Model(provider)
    results: dict[int, str] = {}
    barrier = threading.Barrier(8)

    def call(i: int) -> None:
        barrier.wait()
        results[i] = model.generate(f"q{i}").text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"re:q{i}" for i in range(8)}
    assert provider.backend_calls < 8
    assert sum(model._batcher.batch_sizes) == 8  # type: ignore[union-attr]


def test_async_callers_are_batched():
    provider = MockProvider(lambda r: r.messages[-1].content.upper(), batching=True, delay_s=0.05)
    model = Model(provider)

    async def main() -> list[str]:
        resps = await asyncio.gather(*(model.agenerate(f"x{i}") for i in range(6)))
        return [r.text for r in resps]

    assert asyncio.run(main()) == [f"X{i}" for i in range(6)]
    assert provider.backend_calls < 6


def test_backend_error_reaches_every_caller():
    def boom(_r):
        raise RuntimeError("backend exploded")

    model = Model(MockProvider(boom, batching=True))
    with pytest.raises(RuntimeError, match="exploded"):
        model.generate("x")


def test_generate_many_keeps_order():
    model = Model(MockProvider(lambda r: r.messages[-1].content, batching=True))
    out = model.generate_many([f"p{i}" for i in range(20)])
    assert [r.text for r in out] == [f"p{i}" for i in range(20)]


def test_call_cache_hits_for_seeded_calls_only(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    provider = MockProvider(lambda r: "answer", batching=False)
    model = Model(provider, cache=cache)
    first = model.generate("q", seed=1)
    second = model.generate("q", seed=1)
    assert not first.cached and second.cached and second.text == "answer"
    assert provider.backend_calls == 1
    model.generate("q", seed=2)
    model.generate("q")  # unseeded: never cached
    model.generate("q")
    assert provider.backend_calls == 4
    assert cache.stats() == {"hits": 1, "misses": 2, "entries": 2}
    # persistent: a new cache object on the same file still hits
    again = Model(MockProvider(lambda r: "other"), cache=CallCache(tmp_path / "calls.sqlite"))
    assert again.generate("q", seed=1).text == "answer"
    # a different sampling parameter is a different key
    assert again.generate("q", seed=1, temperature=0.5).text == "other"


def test_call_cache_off_switch(monkeypatch):
    monkeypatch.setenv("AGENTMETA_CALL_CACHE", "0")
    assert get_model("mock").cache is None
    monkeypatch.setenv("AGENTMETA_CALL_CACHE", "1")
    assert get_model("mock").cache is not None


def test_unknown_spec_lists_valid_forms():
    with pytest.raises(ModelSpecError) as e:
        get_model("gpt-99")
    msg = str(e.value)
    assert "\n" not in msg
    for form in ("smollm2", "hf/", "openai/", "vllm/", "mock"):
        assert form in msg


def test_openai_without_base_url(monkeypatch):
    monkeypatch.delenv("AGENTMETA_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="AGENTMETA_BASE_URL"):
        get_model("openai/some-model")


def test_hub_id_offline_says_model_must_be_local():
    from agentmeta.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="must be local"):
        get_model("hf/some-org/some-model-that-is-not-cached")


def test_vllm_without_gpu_or_package_is_clear():
    from agentmeta.errors import AgentMetaError

    with pytest.raises(AgentMetaError, match="vllm|GPU"):
        get_model("vllm/some-model")


def test_shared_models_are_reused():
    a = get_model("mock")
    b = get_model("mock")
    assert a is not b  # mocks are never shared


def test_import_agentmeta_stays_light():
    code = (
        "import sys, agentmeta; agentmeta.get_model('mock').generate('x');"
        "import agentmeta.cli;"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'trl', 'peft') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
