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


def test_batched_greedy_matches_single_greedy(embedded_f32):
    # float32, the reference: a row's result does not depend on the rows decoded beside it
    # (bfloat16's can, in near-ties; its effect on scores is in bench/results/precision.json)
    prompts = ["What is the capital of France?", "Name a color.", "What is 10 minus 4?"]
    single = [embedded_f32.generate(p, max_tokens=12).text for p in prompts]
    batched = [r.text for r in embedded_f32.generate_many(prompts, max_tokens=12)]
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


def test_a_schema_xgrammar_cannot_compile_fails_alone_among_eight_callers(embedded_f32):
    # float32: the others' outputs do not depend on which requests shared their steps
    embedded = embedded_f32
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


def test_eval_runs_the_embedded_model_with_a_lora_adapter_from_its_spec(embedded, dense_model_dir, tmp_path):
    """`--model smollm2:<dir>`: the embedded model with a LoRA adapter (an untrained one here, so
    its answers are the base model's), its spec marked, through the command line."""
    import os
    import subprocess
    import sys

    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    from agentmeta.models.hf import peft_quiet

    adapter = tmp_path / "lora"
    with peft_quiet():  # LoRA's B matrices start at 0: the adapter changes nothing until trained
        model = transformers.AutoModelForCausalLM.from_pretrained(dense_model_dir, torch_dtype=torch.float32)
        get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    suite = tmp_path / "adds.jsonl"
    suite.write_text("".join(json.dumps({"input": f"What is {i} + 2?", "target": str(i + 2), "split": "validation"}) + "\n"
                             for i in range(2)))  # fmt: skip
    runs = {}
    # float32: answers that do not depend on how the two samples happened to share decode steps
    for spec in ("smollm2?dtype=float32", f"smollm2:{adapter}?dtype=float32"):
        out = tmp_path / f"{len(runs)}.json"
        proc = subprocess.run(
            [sys.executable, "-m", "agentmeta", "eval", "direct", "--suite", f"{suite}?scorer=numeric", "--model", spec,
             "--out", str(out), "--json"], capture_output=True, text=True, timeout=600,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "AGENTMETA_CALL_CACHE": "0"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        runs[spec] = json.loads(out.read_text())
    base, with_lora = runs["smollm2?dtype=float32"], runs[f"smollm2:{adapter}?dtype=float32"]
    assert base["model"] == "smollm2?dtype=float32" and with_lora["model"] == f"smollm2+{adapter}?dtype=float32"
    answers = [[r["answer"] for r in run["records"]] for run in (base, with_lora)]
    assert len(answers[0]) == 2 and answers[0] == answers[1]
