"""Model front, batcher, call cache and spec errors, on the mock provider."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest
from pydantic import ValidationError

from agentmeta import get_model
from agentmeta.errors import ConfigError, ModelCallError, ModelRequestError, ModelSpecError
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


def test_unknown_request_fields_are_rejected_in_one_line():
    model = get_model("mock")
    with pytest.raises(ModelRequestError) as e:
        model.generate("hi", max_token=16)
    msg = str(e.value)
    assert "\n" not in msg and "'max_token'" in msg and "did you mean 'max_tokens'" in msg
    for field in ("messages", "n", "temperature", "top_p", "max_tokens", "stop", "seed", "json_schema"):
        assert field in msg
    with pytest.raises(ModelRequestError, match="unknown message field 'name'; valid fields: role, content"):
        model.generate([{"role": "user", "content": "x", "name": "bob"}])
    with pytest.raises(ModelRequestError, match="unknown request field 'max_token'"):
        GenerateRequest(messages=[{"role": "user", "content": "x"}], max_token=3)
    with pytest.raises(ModelRequestError, match="'foo', 'bar'"):
        GenerateRequest.build("x", foo=1, bar=2)
    assert model.usage.calls == 0 and model.provider.backend_calls == 0


def test_request_plus_kwargs_is_validated():
    model = get_model("mock")
    req = GenerateRequest.build("hi", max_tokens=5)
    with pytest.raises(ModelRequestError, match="unknown request field 'max_token'"):
        model.generate(req, max_token=3)
    with pytest.raises(ModelRequestError) as e:
        model.generate(req, temperature=99)  # model_copy(update=...) alone would let this through
    assert "temperature" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ModelRequestError, match="n:"):
        model.generate("hi", n=0)
    with pytest.raises(ModelRequestError, match="not as messages="):
        model.generate("hi", messages=[])
    assert model.generate(req, max_tokens=7, seed=3).text == "mock: hi"
    assert model.provider.requests[-1].max_tokens == 7 and model.provider.requests[-1].seed == 3
    assert req.max_tokens == 5 and req.seed is None  # the caller's request is not changed


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


def _poison(r: GenerateRequest) -> BaseException | None:
    return ValueError("poisoned request") if "poison" in r.messages[-1].content else None


def test_poisoned_request_fails_alone_in_a_batch_of_eight():
    provider = MockProvider(
        lambda r: "re:" + r.messages[-1].content, batching=True, delay_s=0.05, fail=_poison
    )
    model = Model(provider)
    results: dict[int, str | BaseException] = {}
    barrier = threading.Barrier(8)

    def call(i: int) -> None:
        barrier.wait()
        try:
            results[i] = model.generate("poison" if i == 5 else f"q{i}").text
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results.pop(5), ValueError)
    assert results == {i: f"re:q{i}" for i in range(8) if i != 5}
    batcher = model._batcher
    assert batcher is not None and sum(batcher.batch_sizes) == 8
    assert max(batcher.batch_sizes) > 1 and batcher.split_batches >= 1
    assert model.usage.calls == 7


def test_mock_fail_option_fails_the_whole_batch_of_a_direct_call():
    provider = MockProvider(fail=_poison)
    reqs = [GenerateRequest.build(t) for t in ("a", "poison", "c")]
    with pytest.raises(ValueError, match="poisoned"):
        provider.generate_batch(reqs)
    assert [r.text for r in provider.generate_batch([reqs[0], reqs[2]])] == ["mock: a", "mock: c"]
    down = get_model("mock", fail=lambda r: ModelCallError("server down"))
    with pytest.raises(ModelCallError, match="server down"):
        down.generate("x")


def test_every_caller_hears_of_a_backend_that_fails_for_all():
    provider = MockProvider(batching=True, delay_s=0.02, fail=lambda r: ModelCallError("server down"))
    model = Model(provider)
    errors = []

    def call(i: int) -> None:
        try:
            model.generate(f"p{i}")
        except ModelCallError as e:
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 6


def test_wrong_response_count_fails_callers_instead_of_hanging():
    class Short(MockProvider):
        def generate_batch(self, requests):  # noqa: ANN001, ANN202
            return super().generate_batch(requests)[:-1] if len(requests) > 1 else []

    model = Model(Short(batching=True, delay_s=0.02))
    with pytest.raises(ModelCallError, match="0 responses for 1"):
        model.generate_many(["a", "b", "c"])


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
    again = Model(provider, cache=CallCache(tmp_path / "calls.sqlite"))
    assert again.generate("q", seed=1).cached
    assert provider.backend_calls == 4
    # a different sampling parameter is a different key
    assert not again.generate("q", seed=1, temperature=0.5).cached
    assert provider.backend_calls == 5
    # another scripted mock never sees this one's entries
    other = Model(MockProvider(lambda r: "other"), cache=CallCache(tmp_path / "calls.sqlite"))
    assert other.generate("q", seed=1).text == "other"


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
