"""A lean forward pass for Llama-architecture models in bfloat16 on CPU (the embedded default).

transformers' forward spends about as long in Python and small tensor operations as in the
matrix products for the one to eight rows of a decode step: per layer it builds masks, rotary
tables and cache objects, and runs seven projections where four do. This pass computes the same
model with
- the q/k/v projections as one product and the gate/up projections as one (weights concatenated
  once, at load);
- rotary cosines and sines from a table computed once, indexed by position;
- one boolean attention mask per step, shared by the layers;
- the key/value cache written in place into the engine's `SlotLayer` buffers;
- small row counts padded to a multiple of 8 for the product (`engine.rows_product`), so a
  row's product does not depend on how many rows share its step.

It is used for bfloat16 weights only: float32 runs through transformers' own forward, the
reference the engine's greedy outputs are tested against. Models it does not fit (other
architectures, LoRA adapters, biases, scaled rotary variants) run through transformers' forward.
"""

from __future__ import annotations

from typing import Any

from agentmeta.models.engine import SMALL_ROWS, rows_product


def _torch() -> Any:
    import torch

    return torch


def fits(model: Any) -> bool:
    """Whether `LeanLlama` computes this model: a plain `LlamaForCausalLM` (no adapter) in
    bfloat16 on CPU with default rotary embeddings, no biases and SiLU."""
    torch = _torch()
    cfg = getattr(model, "config", None)
    if type(model).__name__ != "LlamaForCausalLM" or cfg is None:
        return False
    if getattr(model, "dtype", None) != torch.bfloat16 or str(getattr(model, "device", "")) != "cpu":
        return False
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    return (
        rope_type == "default"
        and not getattr(cfg, "attention_bias", False)
        and not getattr(cfg, "mlp_bias", False)
        and getattr(cfg, "hidden_act", "silu") == "silu"
        and getattr(cfg, "pretraining_tp", 1) == 1
    )


def _linear(x: Any, weight: Any) -> Any:
    """`x @ weight.T` for x [rows, in]: few rows as the engine's small-rows product (padded to a
    multiple of 8 in bfloat16: fast, and a row's result does not depend on the others), many as
    a plain product."""
    if x.shape[0] > SMALL_ROWS:
        return _torch().nn.functional.linear(x, weight)
    return rows_product(x, weight)


class LeanLlama:
    """The forward pass of a `LlamaForCausalLM` (see the module docstring); holds references to
    the model's weights plus the two concatenated projections per layer."""

    def __init__(self, model: Any) -> None:
        torch = _torch()
        cfg = model.config
        inner = model.model
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(cfg.num_key_value_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads)
        self.eps = float(cfg.rms_norm_eps)
        self.embed = inner.embed_tokens.weight
        self.norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.layers = []
        for layer in inner.layers:
            att, mlp = layer.self_attn, layer.mlp
            self.layers.append(
                (
                    layer.input_layernorm.weight,
                    torch.cat([att.q_proj.weight, att.k_proj.weight, att.v_proj.weight]).contiguous(),
                    att.o_proj.weight,
                    layer.post_attention_layernorm.weight,
                    torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).contiguous(),
                    mlp.down_proj.weight,
                )
            )
        self.scale = float(getattr(inner.layers[0].self_attn, "scaling", self.head_dim**-0.5))
        rotary = inner.rotary_emb
        inv_freq = rotary.inv_freq.float()
        positions = int(getattr(cfg, "max_position_embeddings", 8192) or 8192)
        freqs = torch.arange(positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        scaling = float(getattr(rotary, "attention_scaling", 1.0))
        self.cos = (emb.cos() * scaling).to(torch.bfloat16)
        self.sin = (emb.sin() * scaling).to(torch.bfloat16)

    def _rms(self, x: Any, weight: Any) -> Any:
        torch = _torch()
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    @staticmethod
    def _rotate(x: Any, cos: Any, sin: Any) -> Any:
        torch = _torch()
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin

    def __call__(self, ids: Any, mask: Any, positions: Any, layers: list[Any], keep: int) -> Any:
        """Logits [B, keep, V] (float32) after the last `keep` of the new tokens `ids` [B, T] at
        `positions` [B, T]; `mask` [B, W] marks the cache columns (new ones included, last) each
        row attends to; `layers` are the cache's `SlotLayer`s, extended in place."""
        torch = _torch()
        b, t = ids.shape
        w = mask.shape[1]
        allowed = mask.bool()[:, None, None, :]  # [B, 1, 1, W]
        if t > 1:  # new token i sees the columns up to its own (all rows end at the last column),
            # and always its own: a left-padding position then attends to itself, not to nothing
            causal = torch.ones((t, w), dtype=torch.bool).tril(w - t)
            own = torch.zeros((t, w), dtype=torch.bool)
            own[:, w - t :] = torch.eye(t, dtype=torch.bool)
            allowed = (allowed & causal[None, None]) | own[None, None]
        hd, nq, nk = self.head_dim, self.heads, self.kv_heads
        group = nq // nk
        if t > 1 and group > 1:  # the query heads of one key/value head go as one longer query
            allowed = allowed.repeat(1, 1, group, 1)
        cos = self.cos[positions][:, None]  # [B, 1, T, D]
        sin = self.sin[positions][:, None]
        x = self.embed[ids].reshape(b * t, -1)
        for (ln1, wqkv, wo, ln2, wgu, wdown), layer in zip(self.layers, layers, strict=True):
            qkv = _linear(self._rms(x, ln1), wqkv)
            q = qkv[:, : nq * hd].reshape(b, t, nq, hd).transpose(1, 2)
            k = qkv[:, nq * hd : (nq + nk) * hd].reshape(b, t, nk, hd).transpose(1, 2)
            v = qkv[:, (nq + nk) * hd :].reshape(b, t, nk, hd).transpose(1, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            keys, values = layer.update(k, v)
            # grouped-query attention without copying the cache per query head: the `group` query
            # heads sharing a key/value head are stacked along the query axis
            att = torch.nn.functional.scaled_dot_product_attention(
                q.reshape(b, nk, group * t, hd), keys, values, attn_mask=allowed, scale=self.scale
            )
            x = x + _linear(att.reshape(b, nq, t, hd).transpose(1, 2).reshape(b * t, nq * hd), wo)
            gate, up = _linear(self._rms(x, ln2), wgu).chunk(2, dim=-1)
            x = x + _linear(torch.nn.functional.silu(gate) * up, wdown)
        last = x.reshape(b, t, -1)[:, t - keep :].reshape(b * keep, -1)
        return _linear(self._rms(last, self.norm), self.lm_head).float().reshape(b, keep, -1)
