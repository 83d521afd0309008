"""The call cache's model identity: every weight file, adapter and engine setting, on tiny random models.

The models are a 1-layer Llama with 16 hidden units and a byte-level tokenizer, built in a second,
so these tests need torch, transformers and peft but not the embedded model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentmeta.models import CallCache, Model
from agentmeta.models.fingerprint import file_fingerprint, folder_fingerprint

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _tiny_model(seed: int):  # noqa: ANN202
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=258,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=1,
        pad_token_id=0,
        bos_token_id=None,
    )
    return transformers.LlamaForCausalLM(cfg)


def _tiny_tokenizer():  # noqa: ANN202
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<pad>": 0, "<eos>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant:{% endif %}"
    )
    return fast


def _save(folder: Path, seed: int, **save_kwargs: object) -> Path:
    _tiny_model(seed).save_pretrained(folder, **save_kwargs)
    _tiny_tokenizer().save_pretrained(folder)
    return folder


def _save_adapter(base: Path, folder: Path, seed: int) -> None:
    from peft import LoraConfig, get_peft_model

    from agentmeta.models.hf import peft_quiet

    model = transformers.LlamaForCausalLM.from_pretrained(base)
    torch.manual_seed(seed)  # init_lora_weights=False: both LoRA matrices random, so the adapter acts
    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    with peft_quiet():
        get_peft_model(model, lora).save_pretrained(folder)


def _same_stat(folder: Path, stats: dict[str, os.stat_result]) -> None:
    """Give rewritten files their old mtimes (their sizes are the old ones too): a rewrite that
    size and mtime cannot see."""
    for name, st in stats.items():
        assert (folder / name).stat().st_size == st.st_size
        os.utime(folder / name, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("tiny") / "base", seed=0)


def test_identity_is_stable_across_loads_and_covers_engine_settings(base: Path):
    from agentmeta.models.hf import HFProvider

    a, b = HFProvider(str(base)), HFProvider(str(base))
    assert a.identity() == b.identity() and a.identity().startswith("hf:")
    assert HFProvider(str(base), dtype="bfloat16").identity() != a.identity()
    # files that are not loaded (a README, trainer state) do not change it
    (base / "README.md").write_text("notes")
    (base / "optimizer.pt").write_bytes(b"state")
    try:
        assert HFProvider(str(base)).identity() == a.identity()
    finally:
        (base / "README.md").unlink()
        (base / "optimizer.pt").unlink()


def test_retrained_adapter_in_the_same_folder_misses_the_cache(base: Path, tmp_path: Path):
    from agentmeta.models.hf import HFProvider

    adapter = tmp_path / "adapter"
    cache = CallCache(tmp_path / "calls.sqlite")
    _save_adapter(base, adapter, seed=1)
    first_files = {p.name: p.read_bytes() for p in adapter.iterdir()}
    stats = {name: (adapter / name).stat() for name in first_files}

    first = Model(HFProvider(str(base), adapter=str(adapter)), cache=cache)
    a = first.generate("hi", max_tokens=8, seed=1)
    assert not a.cached and first.generate("hi", max_tokens=8, seed=1).cached

    # "retrain": new weights into the same folder, with the old sizes and even the old mtimes
    _save_adapter(base, adapter, seed=2)
    _same_stat(adapter, stats)
    assert (adapter / "adapter_model.safetensors").read_bytes() != first_files["adapter_model.safetensors"]
    second = Model(HFProvider(str(base), adapter=str(adapter)), cache=cache)
    assert second.provider.identity() != first.provider.identity()
    b = second.generate("hi", max_tokens=8, seed=1)
    assert not b.cached and second.backend_calls == 1
    assert b.text != a.text  # the adapters differ, and so do their answers

    # the first adapter's files back: the first identity again, and its entry is served
    for name, data in first_files.items():
        (adapter / name).write_bytes(data)
    third = Model(HFProvider(str(base), adapter=str(adapter)), cache=cache)
    assert third.provider.identity() == first.provider.identity()
    again = third.generate("hi", max_tokens=8, seed=1)
    assert again.cached and again.text == a.text and third.backend_calls == 0


def test_a_changed_shard_changes_the_identity(tmp_path: Path):
    from safetensors.torch import load_file, save_file

    from agentmeta.models.hf import HFProvider

    folder = _save(tmp_path / "sharded", seed=0, max_shard_size="20KB")
    shards = sorted(folder.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2 and (folder / "model.safetensors.index.json").is_file()
    before = HFProvider(str(folder)).identity()
    assert HFProvider(str(folder)).identity() == before

    shard = shards[-1]
    st = shard.stat()
    tensors = load_file(shard)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, shard, metadata={"format": "pt"})
    _same_stat(folder, {shard.name: st})
    assert HFProvider(str(folder)).identity() != before


def test_big_files_are_fingerprinted_by_size_mtime_and_edges(tmp_path: Path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"a" * 3000)
    st = f.stat()
    big = file_fingerprint(f, full_hash_below=0)
    assert big.startswith("size:3000:") and big == file_fingerprint(f, full_hash_below=0)
    f.write_bytes(b"b" + b"a" * 2999)  # same size, same mtime, a changed first MiB
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_fingerprint(f, full_hash_below=0) != big
    f.write_bytes(b"a" * 3000)  # the same bytes, a new mtime
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert file_fingerprint(f, full_hash_below=0) != big
    # small files are hashed in full: only their content counts
    small = file_fingerprint(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_fingerprint(f) == small


def test_folder_fingerprint_covers_configs_tokenizers_and_adapters(tmp_path: Path):
    for name in ("config.json", "tokenizer.json", "adapter_config.json", "chat_template.jinja"):
        (tmp_path / name).write_text("{}")
    before = folder_fingerprint(tmp_path)
    for name in ("config.json", "tokenizer.json", "adapter_config.json", "chat_template.jinja"):
        (tmp_path / name).write_text('{"x": 1}')
        after = folder_fingerprint(tmp_path)
        assert after != before, name
        before = after
    (tmp_path / "trainer_state.json").write_text("{}")
    (tmp_path / "training_args.bin").write_bytes(b"x")
    assert folder_fingerprint(tmp_path) == before


def test_vllm_identity_covers_files_adapter_and_engine_args(base: Path, tmp_path: Path, monkeypatch):
    """With a stand-in `vllm` module and engine (the real ones run in the vLLM environment,
    tests/models/test_vllm.py): the identity covers files, adapter and engine settings."""
    import sys
    import types

    from agentmeta.models import vllm as vllm_provider
    from agentmeta.models.vllm import VLLMProvider

    fake = types.ModuleType("vllm")
    fake.__version__ = "0.test"
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda *a: a
    for name, mod in (
        ("vllm", fake),
        ("vllm.lora", types.ModuleType("vllm.lora")),
        ("vllm.lora.request", lora),
    ):
        monkeypatch.setitem(sys.modules, name, mod)
    ranks: list[int] = []
    monkeypatch.setattr(vllm_provider, "_acquire", lambda model, args, rank: ranks.append(rank) or object())

    adapter = tmp_path / "adapter"
    _save_adapter(base, adapter, seed=1)
    stats = {p.name: p.stat() for p in adapter.iterdir()}
    first = VLLMProvider(f"{base}:{adapter}").identity()
    assert ranks == [json.loads((adapter / "adapter_config.json").read_text())["r"]]
    assert VLLMProvider(str(base), adapter=str(adapter)).identity() == first
    assert VLLMProvider(str(base)).identity() != first
    assert VLLMProvider(str(base), adapter=str(adapter), max_model_len=128).identity() != first
    _save_adapter(base, adapter, seed=2)
    _same_stat(adapter, stats)
    assert VLLMProvider(str(base), adapter=str(adapter)).identity() != first


def test_an_adapter_is_part_of_the_model_spec(base: Path, tmp_path: Path):
    """`hf/<model>:<dir>` (and `smollm2:<dir>`) load a LoRA adapter: the same model as `adapter=`,
    its spec and cache identity marked, in every command that takes a model spec."""
    from agentmeta.errors import ModelLoadError, ModelSpecError
    from agentmeta.models import get_model, split_adapter

    assert split_adapter("smollm2:/a/b") == ("smollm2", "/a/b")
    assert split_adapter("hf/org/model:/x") == ("hf/org/model", "/x")
    assert split_adapter("vllm/m:/x") == ("vllm/m:/x", None)  # vLLM parses its own
    assert split_adapter("openai/gpt:4") == ("openai/gpt:4", None)
    adapter = tmp_path / "lora"
    _save_adapter(base, adapter, seed=3)
    by_spec = get_model(f"hf/{base}:{adapter}", cache=False, shared=False)
    by_option = get_model(f"hf/{base}", adapter=str(adapter), cache=False, shared=False)
    plain = get_model(f"hf/{base}", cache=False, shared=False)
    assert by_spec.spec == by_option.spec == f"{plain.spec}+{adapter}"
    assert by_spec.provider.identity() == by_option.provider.identity() != plain.provider.identity()
    prompt = [{"role": "user", "content": "abc"}]
    out = by_spec.generate(prompt, max_tokens=6).text
    assert out == by_option.generate(prompt, max_tokens=6).text != plain.generate(prompt, max_tokens=6).text
    with pytest.raises(ModelSpecError, match="contradicts the spec"):
        get_model(f"hf/{base}:{adapter}", adapter="/elsewhere", cache=False, shared=False)
    with pytest.raises(ModelLoadError, match="does not exist"):
        get_model(f"hf/{base}:{tmp_path / 'missing'}", cache=False, shared=False)
