"""The engine's fast paths: prompt-lookup drafts, the lean bfloat16 forward, engine options in a
model spec, and loading off the caller's thread. Pure functions first, then the real model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from agentmeta.errors import ModelSpecError
from agentmeta.models import split_options
from agentmeta.models.engine import draft_tokens
from agentmeta.models.threads import in_own_thread
from agentmeta.models.types import GenerateRequest

REFERENCE = json.loads((Path(__file__).parent / "data" / "greedy_reference.json").read_text())


# -- pure functions ---------------------------------------------------------------------------
def test_drafts_are_what_followed_the_latest_earlier_occurrence_of_the_tail():
    ctx = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3]
    # the tail (1, 2, 3) last occurred before at index 5, followed by 7, 8, 5
    assert draft_tokens(ctx, 3) == [7, 8, 5]
    assert draft_tokens(ctx, 1) == [7]
    # fewer tokens follow than asked for
    assert draft_tokens([4, 5, 6, 4, 5], 5) == [6, 4, 5]
    # the longest tail first: (2, 3) occurs followed by 4, but (1, 2, 3) by 6
    assert draft_tokens([2, 3, 4, 1, 2, 3, 6, 0, 1, 2, 3], 1) == [6]
    # no earlier occurrence, nothing asked for, too short
    assert draft_tokens([1, 2, 3, 4], 3) == []
    assert draft_tokens([1, 1, 1], 0) == []
    assert draft_tokens([7], 3) == []


def test_engine_options_ride_on_the_spec_after_a_question_mark():
    assert split_options("smollm2") == ("smollm2", {})
    assert split_options("smollm2?dtype=float32") == ("smollm2", {"dtype": "float32"})
    assert split_options("smollm2:/ad?speculate=0&dtype=bfloat16") == (
        "smollm2:/ad",
        {"speculate": 0, "dtype": "bfloat16"},
    )
    assert split_options("hf/org/model?speculate=3") == ("hf/org/model", {"speculate": 3})
    for bad, says in [
        ("openai/x?dtype=float32", "only smollm2 and hf/"),
        ("smollm2?temperature=1", "keys dtype, speculate"),
        ("smollm2?dtype", "key=value"),
        ("smollm2?speculate=many", "whole number"),
    ]:
        with pytest.raises(ModelSpecError, match=says):
            split_options(bad)


def test_a_model_spec_option_that_contradicts_a_keyword_is_refused():
    from agentmeta import get_model

    with pytest.raises(ModelSpecError, match="contradicts"):
        get_model("smollm2?dtype=float32", dtype="bfloat16", shared=False)
    with pytest.raises(ModelSpecError, match="dtype must be one of"):
        get_model("smollm2?dtype=int3", shared=False)


def test_in_own_thread_returns_the_value_or_raises_the_error_of_another_thread():
    here = threading.get_ident()
    assert in_own_thread(threading.get_ident) != here
    assert in_own_thread(lambda: 42) == 42
    with pytest.raises(KeyError, match="missing"):
        in_own_thread(lambda: {}["missing"])


# -- the real model ---------------------------------------------------------------------------
def _request(item: dict, **over: object) -> GenerateRequest:
    fields = {"max_tokens": item["max_tokens"], "stop": item.get("stop", []), "temperature": 0.0, **over}
    return GenerateRequest.build(item["messages"], **fields)


@pytest.mark.embedded
def test_the_default_weight_format_follows_what_the_cpu_computes_natively(monkeypatch):
    import torch

    from agentmeta import get_model
    from agentmeta.models.hf import HFProvider, embedded_dtype, fast_bfloat16

    monkeypatch.setenv("AGENTMETA_DTYPE", "int4")
    with pytest.raises(ModelSpecError, match="AGENTMETA_DTYPE must be one of"):
        embedded_dtype()
    monkeypatch.setenv("AGENTMETA_DTYPE", "float32")
    assert embedded_dtype() == "float32"
    monkeypatch.delenv("AGENTMETA_DTYPE")  # the tests' setting (conftest) off: the real default
    model = get_model("smollm2", cache=False, shared=False)
    try:
        provider = model.provider
        if fast_bfloat16():
            assert provider.model.dtype == torch.bfloat16 and model.spec == "smollm2"
            assert provider.engine.lean is not None and provider.engine.speculate == HFProvider.SPECULATE
        else:
            assert provider.model.dtype == torch.float32
            assert provider.engine.lean is None and provider.engine.speculate == 0
    finally:
        model.close()


@pytest.mark.embedded
def test_drafts_checked_in_one_pass_give_the_reference_greedy_outputs_in_float32():
    """Speculation keeps only what greedy decoding picks: on the float32 reference it reproduces
    the recorded completions exactly while skipping decode steps."""
    from agentmeta import get_model

    model = get_model("smollm2?dtype=float32&speculate=4", cache=False, shared=False)
    try:
        engine = model.provider.engine
        assert engine.lean is None  # float32 runs through transformers' forward
        steps, tokens = model.provider.backend_steps, 0
        for item in REFERENCE:
            response = model.generate(_request(item))
            assert response.text == item["text"]
            tokens += response.completion_tokens[0]
        assert engine.accepted > 0 and engine.drafted >= engine.accepted
        # every kept draft is a decode step saved
        assert model.provider.backend_steps - steps <= tokens - engine.accepted
        # all ten at once: drafts are checked once eight or fewer rows are left, each row keeping
        # its own (a column one row kept and another did not is masked out for the other)
        accepted = engine.accepted
        together = model.generate_many([_request(item) for item in REFERENCE])
        assert [r.text for r in together] == [item["text"] for item in REFERENCE]
        assert engine.accepted > accepted
    finally:
        model.close()


@pytest.mark.embedded
def test_the_lean_forward_computes_what_transformers_computes_in_bfloat16():
    import torch

    from agentmeta.models.hf import HFProvider, dense_dir

    provider = HFProvider(str(dense_dir()), dtype="bfloat16", speculate=0)
    try:
        engine = provider.engine
        assert engine.lean is not None
        ids = provider.tokenizer("The cat sat on the mat because it was warm and", add_special_tokens=False)[
            "input_ids"
        ]
        n = len(ids)
        with torch.inference_mode():
            x = torch.tensor([ids])
            mask = torch.ones((1, n), dtype=torch.long)
            pos = torch.arange(n).unsqueeze(0)
            lean = engine._forward(x, mask, pos, engine._new_cache(), keep=n)[0]
            engine.lean, kept = None, engine.lean
            try:
                ref = engine._forward(x, mask, pos, engine._new_cache(), keep=n)[0]
            finally:
                engine.lean = kept
        # bfloat16 rounding differs between the two orders of operations; the predictions agree
        agree = (lean.argmax(-1) == ref.argmax(-1)).float().mean().item()
        assert agree >= 0.9, agree
        assert torch.allclose(lean.softmax(-1), ref.softmax(-1), atol=0.05)
    finally:
        provider.close()


@pytest.mark.embedded
def test_speculation_in_bfloat16_keeps_drafts_and_replays():
    from agentmeta import get_model
    from agentmeta.models.hf import HFProvider

    model = get_model("smollm2?dtype=bfloat16", cache=False)  # the default where bfloat16 is native
    engine = model.provider.engine
    assert engine.speculate == HFProvider.SPECULATE  # on by default for bfloat16 on a CPU
    text = "red, green, blue, yellow, red, green, blue, yellow, red, green, blue, yellow"
    request = GenerateRequest.build(f"Repeat this list twice: {text}", max_tokens=48, temperature=0.0)
    before = engine.accepted
    first = model.generate(request).text
    assert engine.accepted > before
    assert model.generate(request).text == first
    # a sampled request is never speculated
    drafted = engine.drafted
    model.generate(request.model_copy(update={"temperature": 0.8, "seed": 1}))
    assert engine.drafted == drafted


@pytest.mark.embedded
def test_in_bfloat16_an_adapter_is_merged_and_an_untrained_one_changes_nothing(dense_model_dir, tmp_path):
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    from agentmeta import get_model
    from agentmeta.models.hf import peft_quiet

    adapter = tmp_path / "lora"
    with peft_quiet():  # LoRA's B matrices start at 0
        base = transformers.AutoModelForCausalLM.from_pretrained(dense_model_dir, dtype=torch.float32)
        get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    plain = get_model("smollm2?dtype=bfloat16", cache=False)
    tuned = get_model(f"smollm2:{adapter}?dtype=bfloat16", cache=False, shared=False)
    try:
        assert type(tuned.provider.model).__name__ == "LlamaForCausalLM"  # merged: no PEFT wrapper
        assert tuned.provider.engine.lean is not None
        assert tuned.spec == f"smollm2+{adapter}?dtype=bfloat16"
        for question in ["What is 7 + 5?", "Name a fruit."]:  # one at a time: each decodes alone
            assert tuned.generate(question, max_tokens=24).text == plain.generate(question, max_tokens=24).text
    finally:
        tuned.close()


@pytest.mark.embedded
def test_an_idle_decode_thread_ends_and_the_next_request_starts_another(embedded, monkeypatch):
    import time

    import agentmeta.models.engine as engine_module

    monkeypatch.setattr(engine_module, "IDLE_EXIT_S", 0.2)
    engine = embedded.provider.engine
    first = embedded.generate("Name a color.", max_tokens=4).text
    deadline = time.monotonic() + 10
    while engine._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine._thread is None  # ended: its CPU thread pool with it
    assert embedded.generate("Name a color.", max_tokens=4).text == first
    assert engine._thread is not None and engine._thread.is_alive()
