"""The CPU linear kernels the embedded backend installs (`engine.tune_for_cpu`), on a small random
Llama: the same logits as the model's own layers, fused siblings included, and the plain forward
whenever gradients are on."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agentmeta.models import engine  # noqa: E402


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=96, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(cfg).eval()


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("rows", [1, 3, 16])
def test_packed_kernels_give_the_models_logits(rows):
    plain, tuned = _tiny(), _tiny()
    assert engine.tune_for_cpu(tuned) == "onednn-packed"
    ids = torch.randint(0, 96, (rows, 7), generator=torch.Generator().manual_seed(rows))
    want, got = _logits(plain, ids), _logits(tuned, ids)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)
    assert torch.equal(got.argmax(-1), want.argmax(-1))


def test_fused_siblings_share_one_gemm_and_each_takes_its_own_columns():
    model = _tiny()
    engine.tune_for_cpu(model)
    attn = model.model.layers[0].self_attn
    x = torch.randn(5, 64)
    with torch.inference_mode():
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
        q_again = attn.q_proj(x)  # a member called again on the same input runs the GEMM again
        other = torch.randn(5, 64)
        k_other = attn.k_proj(other)  # another input: its own GEMM, not the cached output
    cases = ((q, attn.q_proj, x), (k, attn.k_proj, x), (v, attn.v_proj, x),
             (q_again, attn.q_proj, x), (k_other, attn.k_proj, other))
    for got, layer, inp in cases:
        assert got.shape == (5, layer.out_features)
        with torch.inference_mode():
            want = inp @ layer.weight.t()
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5)


def test_with_gradients_on_the_plain_forward_runs():
    model = _tiny()
    engine.tune_for_cpu(model)
    layer = model.model.layers[0].mlp.gate_proj
    x = torch.randn(2, 64, requires_grad=True)
    out = layer(x)
    assert torch.equal(out, torch.nn.functional.linear(x, layer.weight))
    out.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


def test_models_over_the_packing_budget_keep_one_copy_of_their_weights(monkeypatch):
    monkeypatch.setattr(engine, "PACK_BUDGET_BYTES", 1000)
    plain, tuned = _tiny(), _tiny()
    assert engine.tune_for_cpu(tuned) == "small-rows"
    assert not any(hasattr(m, "_agentmeta_packed") for m in tuned.modules())
    ids = torch.randint(0, 96, (3, 5), generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_logits(tuned, ids), _logits(plain, ids), rtol=1e-4, atol=1e-5)
