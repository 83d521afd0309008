"""The embedded model's continuous-batching engine, on the real model in float32 (the reference).

`data/greedy_reference.json` holds greedy completions of fixed prompts recorded with the backend
this engine replaced (static padded batches, all ten prompts in one batch; each equal to its
completion alone): the engine must reproduce them exactly, alone, together, and when requests
join a batch that is already decoding. The bfloat16 default's own tests are in test_fast_engine.py.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from pathlib import Path

import pytest

from agentmeta.errors import ModelCallError
from agentmeta.models.types import GenerateRequest

pytestmark = pytest.mark.embedded

REFERENCE = json.loads((Path(__file__).parent / "data" / "greedy_reference.json").read_text())


@pytest.fixture(scope="module")
def embedded(embedded_f32):
    """These tests hold the float32 reference to its recorded outputs."""
    return embedded_f32


def _request(item: dict, **over: object) -> GenerateRequest:
    fields = {"max_tokens": item["max_tokens"], "stop": item.get("stop", []), "temperature": 0.0, **over}
    return GenerateRequest.build(item["messages"], **fields)


def _wait(pred, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_greedy_outputs_equal_the_previous_backend_together_and_alone(embedded):
    engine = embedded.provider.engine
    assert engine.continuous
    hits_before = engine.head_hits
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation warning from the decode loop
        together = embedded.generate_many([_request(item) for item in REFERENCE])
    for item, got in zip(REFERENCE, together, strict=True):
        assert got.text == item["text"], item["messages"][-1]["content"]
        assert got.finish_reasons == [item["finish"]] and got.completion_tokens == [item["completion_tokens"]]
    # the two word problems share a long system prompt with demonstrations: prefilled once
    assert engine.head_hits - hits_before >= 100
    for item in REFERENCE[:4]:
        assert embedded.generate(_request(item)).text == item["text"]


def test_a_request_joins_a_running_batch_and_leaves_as_soon_as_it_is_done(embedded):
    provider = embedded.provider
    long_item, short_item = REFERENCE[9], REFERENCE[0]
    long_req = _request(long_item, max_tokens=160)
    steps = provider.backend_steps
    long_future = provider.submit(long_req)
    _wait(lambda: provider.backend_steps >= steps + 20)  # the long one is decoding
    short = provider.submit(_request(short_item)).result(timeout=300)
    assert not long_future.done()  # the short one did not wait for the long one's batch to end
    assert short.text == short_item["text"]  # joining a batch of another width changes nothing
    long_text = long_future.result(timeout=600).text
    assert long_text.startswith(long_item["text"])
    assert embedded.generate(long_req).text == long_text


def test_requests_arriving_one_by_one_get_the_outputs_they_get_alone(embedded):
    provider = embedded.provider
    futures = []
    for item in REFERENCE[4:9]:
        futures.append(provider.submit(_request(item)))
        time.sleep(0.3)  # each arrives while the others decode; some finish before the last joins
    for item, fut in zip(REFERENCE[4:9], futures, strict=True):
        assert fut.result(timeout=600).text == item["text"]


def test_n_greedy_samples_share_one_prefill_and_seeded_samples_do_not_depend_on_the_batch(embedded):
    engine = embedded.provider.engine
    item = REFERENCE[1]
    before = engine.prefills
    r = embedded.generate(_request(item, n=3))
    assert r.texts == [item["text"]] * 3
    assert engine.prefills - before == 1
    sampled = _request(item, temperature=0.9, seed=11, n=2, max_tokens=24)
    alone = embedded.generate(sampled).texts
    crowd = embedded.generate_many([sampled, _request(REFERENCE[2]), _request(REFERENCE[7])])
    assert crowd[0].texts == alone and len(set(alone)) == 2


def test_a_decoding_failure_fails_the_requests_decoding_and_the_engine_goes_on(embedded, monkeypatch):
    engine = embedded.provider.engine
    real = engine._forward
    calls = {"n": 0}

    def broken(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("out of memory\nmore detail")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_forward", broken)
    with pytest.raises(ModelCallError, match="decoding failed: RuntimeError: out of memory$"):
        embedded.generate(_request(REFERENCE[0]))
    monkeypatch.setattr(engine, "_forward", real)
    assert embedded.generate(_request(REFERENCE[0])).text == REFERENCE[0]["text"]


def test_the_static_path_for_other_caches_gives_the_same_outputs(embedded, monkeypatch):
    engine = embedded.provider.engine
    monkeypatch.setattr(engine, "continuous", False)
    got = embedded.generate_many([_request(item) for item in REFERENCE[:6]])
    assert [g.text for g in got] == [item["text"] for item in REFERENCE[:6]]


def test_many_threads_each_get_their_own_answer(embedded):
    prompts = [f"Say the number {i}." for i in range(6)]
    alone = [embedded.generate(p, max_tokens=8).text for p in prompts]
    out: list[str] = [""] * 6
    barrier = threading.Barrier(6)

    def call(i: int) -> None:
        barrier.wait()
        out[i] = embedded.generate(prompts[i], max_tokens=8).text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == alone


def test_more_new_prompt_heads_at_once_than_the_head_cache_keeps(embedded, monkeypatch):
    from agentmeta.models import engine as engine_module

    monkeypatch.setattr(engine_module, "HEAD_CACHE", 1)
    systems = [
        f"You are assistant number {i}. " + "Answer briefly and politely, in plain words. " * 3
        for i in range(3)
    ]
    reqs = [
        GenerateRequest.build(
            [{"role": "system", "content": s}, {"role": "user", "content": q}], max_tokens=6
        )
        for s in systems
        for q in ("Name a color.", "Name an animal.")
    ]
    provider = embedded.provider
    steps = provider.backend_steps
    busy = provider.submit(_request(REFERENCE[9], max_tokens=120))
    _wait(lambda: provider.backend_steps >= steps + 2)
    hits = provider.engine.head_hits
    # queued at once while a step runs, so the six are admitted together (not one by one)
    together = [r.text for r in provider.generate_batch(reqs)]
    busy.result(timeout=600)
    assert provider.engine.head_hits > hits  # each pair shared its own head
    assert together == [embedded.generate(r).text for r in reqs]


def test_a_closed_model_fails_what_it_was_decoding_and_serves_again_afterwards(embedded):
    provider = embedded.provider
    steps = provider.backend_steps
    running = provider.submit(_request(REFERENCE[9], max_tokens=200))
    _wait(lambda: provider.backend_steps >= steps + 3)
    provider.close()
    with pytest.raises(ModelCallError, match="closed"):
        running.result(timeout=60)
    assert embedded.generate(_request(REFERENCE[0])).text == REFERENCE[0]["text"]
