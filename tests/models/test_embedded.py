"""The real embedded SmolLM2 model: generation, batching, constrained JSON, stops, seeds."""

from __future__ import annotations

import json
import threading

import pytest

from agentmeta.errors import ModelRequestError

pytestmark = pytest.mark.embedded


def test_greedy_answer_is_deterministic_and_counted(embedded):
    a = embedded.generate("What is 2+3?", max_tokens=16)
    b = embedded.generate("What is 2+3?", max_tokens=16)
    assert a.text == b.text and a.text.strip()
    assert "5" in a.text
    assert a.prompt_tokens > 5 and 0 < a.completion_tokens[0] <= 16
    assert a.finish_reasons[0] in ("stop", "length")


def test_max_tokens_is_respected(embedded):
    r = embedded.generate("Write a long story about a dragon.", max_tokens=5)
    assert r.completion_tokens == [5] and r.finish_reasons == ["length"]


def test_eight_concurrent_callers_use_fewer_backend_calls(embedded):
    before = embedded.backend_calls
    barrier = threading.Barrier(8)
    texts: list[str] = [""] * 8

    def call(i: int) -> None:
        barrier.wait()
        texts[i] = embedded.generate(f"Say the number {i}.", max_tokens=8).text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    used = embedded.backend_calls - before
    assert all(texts)
    assert used < 8, f"8 callers took {used} backend calls"


def test_batched_greedy_matches_single_greedy(embedded):
    prompts = ["What is the capital of France?", "Name a color.", "What is 10 minus 4?"]
    single = [embedded.generate(p, max_tokens=12).text for p in prompts]
    batched = [r.text for r in embedded.generate_many(prompts, max_tokens=12)]
    assert batched == single


def test_json_schema_output_is_valid(embedded):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer"},
            "kind": {"enum": ["cat", "dog"]},
        },
        "required": ["name", "age", "kind"],
        "additionalProperties": False,
    }
    r = embedded.generate(
        "Describe a pet as JSON.", max_tokens=80, json_schema=schema, n=3, temperature=0.9, seed=3
    )
    for text in r.texts:
        data = json.loads(text)
        assert set(data) == {"name", "age", "kind"}
        assert isinstance(data["age"], int) and data["kind"] in ("cat", "dog")


def test_seeded_sampling_reproducible_and_n_distinct(embedded):
    a = embedded.generate("Invent a word.", max_tokens=12, temperature=1.0, seed=7, n=4)
    b = embedded.generate("Invent a word.", max_tokens=12, temperature=1.0, seed=7, n=4)
    assert a.texts == b.texts
    assert len(set(a.texts)) > 1


def test_stop_string_cuts_completion(embedded):
    full = embedded.generate("List the numbers from 1 to 10 separated by commas.", max_tokens=40).text
    assert "," in full
    cut = embedded.generate("List the numbers from 1 to 10 separated by commas.", max_tokens=40, stop=[","])
    assert cut.text == full[: full.index(",")]
    assert cut.finish_reasons == ["stop"]


def test_a_schema_xgrammar_cannot_compile_fails_alone_among_eight_callers(embedded):
    prompts = [f"Say the number {i}." for i in range(8)]
    results: list[object] = [None] * 8
    barrier = threading.Barrier(8)

    def call(i: int) -> None:
        barrier.wait()
        kwargs = {"json_schema": {"type": "foo"}} if i == 3 else {}
        try:
            results[i] = embedded.generate(prompts[i], max_tokens=8, **kwargs).text
        except Exception as e:  # noqa: BLE001
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = results.pop(3)
    assert isinstance(bad, ModelRequestError), bad
    assert "JSON schema not supported" in str(bad) and "foo" in str(bad) and "\n" not in str(bad)
    good = [p for i, p in enumerate(prompts) if i != 3]
    assert results == [r.text for r in embedded.generate_many(good, max_tokens=8)]
