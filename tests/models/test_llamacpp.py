"""The `llamacpp` provider on the embedded model (llama.cpp built from source, real model).

Skipped where llama-cpp-python is not installed; CI installs it and sets AGENTMETA_REQUIRE_LLAMACPP=1.

Checks what callers rely on: `llamacpp` runs the weights `smollm2` runs (greedy outputs mostly
equal), greedy outputs do not depend on what else is decoding, seeded samples
repeat, stop strings, token limits and JSON schemas hold, errors are one clear line, and requests
from many threads share the decode steps.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

try:
    import llama_cpp
except ImportError:
    if os.environ.get("AGENTMETA_REQUIRE_LLAMACPP") == "1":
        raise
    pytest.skip("llama-cpp-python is not installed (the llamacpp extra, see the README)", allow_module_level=True)

from agentmeta.errors import ModelCallError, ModelLoadError, ModelRequestError  # noqa: E402
from agentmeta.models import get_model  # noqa: E402
from agentmeta.models.llamacpp import LlamaCppProvider, parse_spec  # noqa: E402

pytestmark = pytest.mark.embedded

QUESTIONS = [f"What is {a} * {b}? Think step by step." for a, b in [(3, 11), (17, 23), (6, 45), (12, 13), (9, 71)]]


@pytest.fixture(scope="module")
def lcpp():
    model = get_model("llamacpp", cache=False, shared=False, max_batch=8)
    yield model
    model.close()


def test_greedy_outputs_do_not_depend_on_what_else_is_decoding(lcpp):
    alone = [lcpp.generate(q, max_tokens=48).text for q in QUESTIONS]
    assert all(alone) and len(set(alone)) == len(alone)
    others = [f"Write a sentence about the number {i}." for i in range(7)]
    with ThreadPoolExecutor(12) as pool:  # more callers than sequences: some wait for a free one
        together = list(pool.map(lambda q: lcpp.generate(q, max_tokens=48).text, others + QUESTIONS))
    assert together[len(others) :] == alone
    steps_before = lcpp.provider.backend_steps
    many = lcpp.generate(QUESTIONS[1], n=3, max_tokens=48)
    assert many.texts == [alone[1]] * 3
    assert lcpp.provider.backend_steps - steps_before <= 49  # the three rows decode side by side


def test_with_prompt_cache_a_head_in_a_free_sequence_is_not_prefilled_again(lcpp):
    assert lcpp.provider.reused_tokens == 0  # off by default
    head = "You are a careful tutor. Explain each step, check the arithmetic twice, and end with the answer. "
    fresh = get_model("llamacpp", cache=False, shared=False, max_batch=2, prompt_cache=True)
    try:
        expected = [fresh.generate(head + q, max_tokens=32).text for q in QUESTIONS[:1]]
        before = fresh.provider.reused_tokens
        expected += [fresh.generate(head + q, max_tokens=32).text for q in QUESTIONS[1:3]]
        # the chat template, the head and the question's first words were in the freed sequence
        assert fresh.provider.reused_tokens - before >= 2 * len(lcpp.provider.tokenize(head))
    finally:
        fresh.close()
    # here the same answers as prompts prefilled whole, in another order and among other callers
    other = get_model("llamacpp", cache=False, shared=False, max_batch=3)
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda q: other.generate(head + q, max_tokens=32).text, QUESTIONS[2::-1]))
        assert got[::-1] == expected
    finally:
        other.close()


def test_seeded_samples_repeat_and_seeds_differ(lcpp):
    kw = {"n": 4, "temperature": 0.9, "top_p": 0.95, "max_tokens": 24}
    a = lcpp.generate("Name an animal and describe it.", seed=7, **kw)
    b = lcpp.generate("Name an animal and describe it.", seed=7, **kw)
    c = lcpp.generate("Name an animal and describe it.", seed=8, **kw)
    assert a.texts == b.texts
    assert a.texts != c.texts
    assert len(set(a.texts)) > 1  # the n samples are not copies of one


def test_stop_strings_and_token_limits(lcpp):
    r = lcpp.generate("Count from 1 to 20, separated by commas.", stop=["7"], max_tokens=80)
    assert r.finish_reasons == ["stop"]
    assert "7" not in r.text and "6" in r.text
    r = lcpp.generate("Write a long story about a dragon.", max_tokens=9)
    assert r.finish_reasons == ["length"] and r.completion_tokens == [9]
    assert r.prompt_tokens > 10


def test_json_schema_constrains_the_output(lcpp):
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    r = lcpp.generate("Describe a person as JSON.", json_schema=schema, max_tokens=80, n=2, temperature=0.7, seed=1)
    for text in r.texts:
        value = json.loads(text)
        assert set(value) == {"name", "age"} and isinstance(value["age"], int)


def test_bad_requests_fail_alone_with_one_line(lcpp):
    with pytest.raises(ModelRequestError, match="prompt has .* tokens"):
        lcpp.generate("word " * 5000)
    with pytest.raises(ModelRequestError, match="JSON schema not supported"):
        lcpp.generate("hi", json_schema={"type": "no-such-type"})
    assert lcpp.generate(QUESTIONS[0], max_tokens=4).completion_tokens == [4]  # still serving


def test_more_completions_than_sequences():
    model = get_model("llamacpp", cache=False, shared=False, max_batch=2)
    try:
        r = model.generate(QUESTIONS[0], n=5, max_tokens=12)
        assert len(r.texts) == 5 and len(set(r.texts)) == 1
    finally:
        model.close()
    with pytest.raises(ModelCallError, match="closed"):
        model.generate(QUESTIONS[0], max_tokens=4)


def test_llama_cpp_is_built_without_openmp():
    # the README's build: on llama.cpp's own thread pool, so it does not share (and throttle) the
    # OpenMP runtime torch uses in the same process
    assert b"OPENMP = 1" not in llama_cpp.llama_print_system_info()


def test_load_errors_and_identity(tmp_path, lcpp):
    with pytest.raises(ModelLoadError, match="does not exist"):
        LlamaCppProvider(str(tmp_path / "missing.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(ModelLoadError, match="could not load"):
        LlamaCppProvider(str(bad))
    ident = lcpp.provider.identity()
    assert ident.startswith("llamacpp:") and ident != get_model("mock").provider.identity()


def test_seeded_calls_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTMETA_CACHE_DIR", str(tmp_path))
    model = get_model("llamacpp", shared=False, max_batch=2)
    try:
        first = model.generate(QUESTIONS[2], max_tokens=16, seed=3)
        again = model.generate(QUESTIONS[2], max_tokens=16, seed=3)
        assert not first.cached and again.cached and again.texts == first.texts
    finally:
        model.close()


def test_cot_evaluation_runs_on_it(lcpp):
    from agentmeta.eval import evaluate, load_suite

    suite = load_suite("rg/basic_arithmetic", limit=4)
    res = evaluate("cot", suite, model=lcpp, concurrency=4, max_tokens=64)
    assert len(res.records) == 4
    assert all(rec.completion_tokens > 0 and rec.outcome == "scored" and rec.answer is not None for rec in res.records)


def test_it_runs_the_weights_smollm2_runs(lcpp, tmp_path, monkeypatch):
    from agentmeta.models.gguf import file_type
    from agentmeta.models.hf import gguf_path

    # the default: the shipped GGUF de-quantized once to float16, the values smollm2 holds in float32
    assert lcpp.spec == "llamacpp" and lcpp.provider.path != gguf_path()
    assert file_type(lcpp.provider.path) == llama_cpp.LLAMA_FTYPE_MOSTLY_F16
    prompts = QUESTIONS + ["Write a sentence about the number 4.", "Name three colours.", "What is the capital of France?"]
    ours = [lcpp.generate(q, max_tokens=48).text for q in prompts]
    reference = get_model("smollm2?dtype=float32", cache=False, shared=False)
    try:
        theirs = [reference.generate(q, max_tokens=48).text for q in prompts]
    finally:
        reference.close()
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    assert same >= 6, f"only {same} of {len(prompts)} greedy outputs equal smollm2's"
    # q4_1 is the shipped file's own type: run as it is, nothing written
    monkeypatch.setenv("AGENTMETA_MODELS_DIR", str(tmp_path))
    shipped = get_model("llamacpp/q4_1", cache=False, shared=False, max_batch=1)
    try:
        assert shipped.provider.path == gguf_path() and shipped.spec == "llamacpp/q4_1"
        assert shipped.provider.identity() != lcpp.provider.identity()
        assert shipped.generate(QUESTIONS[0], max_tokens=8).completion_tokens == [8]
    finally:
        shipped.close()
    assert list(tmp_path.iterdir()) == []


def test_spec_forms():
    assert parse_spec("") == (None, None)
    assert parse_spec("q8_0") == (None, "q8_0")
    assert parse_spec("models/x.gguf") == ("models/x.gguf", None)
    assert parse_spec("models/x.gguf:Q4_K_M") == ("models/x.gguf", "q4_k_m")
    assert parse_spec("c:/x.gguf") == ("c:/x.gguf", None)


def test_a_requantized_copy_is_written_once_and_cached_apart(tmp_path, monkeypatch, lcpp):
    monkeypatch.setenv("AGENTMETA_MODELS_DIR", str(tmp_path))
    model = get_model("llamacpp/q8_0", cache=False, shared=False, max_batch=2)
    try:
        path = model.provider.path
        assert path.parent == tmp_path and path.name.endswith(".q8_0.gguf")
        assert model.spec == "llamacpp/q8_0"
        assert model.provider.identity() != lcpp.provider.identity()
        r = model.generate(QUESTIONS[1], max_tokens=24)
        assert r.completion_tokens[0] > 0 and r.text
        written = path.stat().st_mtime_ns
    finally:
        model.close()
    again = get_model("llamacpp", quantize="q8_0", cache=False, shared=False, max_batch=1)
    try:
        assert again.provider.path == path and path.stat().st_mtime_ns == written  # reused
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    finally:
        again.close()


def test_extra_buffer_types_are_probed_once_per_machine(tmp_path, monkeypatch):
    # llama.cpp's AMX kernels (Q4_0/Q4_1/Q8_0/K-quant weights) kill the process with SIGILL or
    # SIGSEGV in virtual machines that report AMX but do not run it: a child process finds out
    from agentmeta.models import gguf

    monkeypatch.setenv("AGENTMETA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(gguf, "_extra_buffers_ok", None)
    monkeypatch.setenv("AGENTMETA_LLAMACPP_EXTRA_BUFFERS", "0")
    assert gguf.extra_buffers_work(llama_cpp) is False
    monkeypatch.delenv("AGENTMETA_LLAMACPP_EXTRA_BUFFERS")
    ok = gguf.extra_buffers_work(llama_cpp)
    amx = "amx" in Path("/proc/cpuinfo").read_text()
    record = tmp_path / "llamacpp-extra-buffers.json"
    assert record.is_file() == amx  # probed only where the CPU reports AMX
    if amx:
        assert list(json.loads(record.read_text()).values()) == [ok]
        # a second process reads the answer instead of probing again
        monkeypatch.setattr(gguf, "_extra_buffers_ok", None)
        monkeypatch.setattr(gguf, "_PROBE", "raise SystemExit(9)")
        assert gguf.extra_buffers_work(llama_cpp) is ok
    # whichever the answer, a Q4_1 model (a type with AMX kernels) decodes in this process
    model = get_model("llamacpp/q4_1", cache=False, shared=False, max_batch=2)
    try:
        assert model.provider.extra_buffers is ok
        assert model.generate(QUESTIONS[2], max_tokens=4).completion_tokens == [4]
    finally:
        model.close()
