"""A Qwen2 forward for batched serving, with the weights of transformers' ``Qwen2ForCausalLM``.

Tokens of all sequences in a step are flattened into one ``[T, hidden]`` matrix, so every matmul runs once per
step (fused QKV and fused gate/up projections; nano-vllm's layout). Only attention is per sequence:

- prefill: causal SDPA over each new sequence's own tokens, whose K/V are also written into its KV slot;
- decode, ``lengths_host`` given (CPU, eager): SDPA per sequence over a *view* of its slot, ``[:len]``: it reads
  exactly the real length, copies nothing, and with no mask SDPA keeps native GQA (``enable_gqa``, no repeat_kv).
  On CPU the per-call overhead is small next to the matmuls, so this beats padding to the longest sequence;
- decode, ``lengths_host`` None (CUDA graphs need static shapes): lengths stay on the device and a Triton
  split-K kernel reads each slot up to its real length; where the kernel is unavailable, one SDPA over the
  slots gathered up to a static ``window``, masked past each length (``meta.split_k``, set by the runner).

Numerics follow transformers: RMSNorm in fp32, RoPE tables from the HF module's own ``inv_freq`` (so
``rope_theta`` and scaled variants match) computed in fp32, Q/K/V biases, ``scale = head_dim ** -0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from securechat.engine.batched.decode_attention import (
    masked_window_attention,
    per_sequence_attention,
    split_k_attention,
)
from securechat.engine.batched.kv_cache import KVCache, KVCacheShape


@dataclass(slots=True)
class AttentionMetadata:
    is_prefill: bool
    slots: torch.Tensor  # [B] int64 KV rows, one per sequence
    positions: torch.Tensor  # [T] int64 position of each token
    cu_seqlens: list[int] | None = None  # prefill: [B + 1] token offsets of each sequence (host)
    slots_host: list[int] | None = None  # prefill and per-sequence decode: the KV rows (host)
    lengths: torch.Tensor | None = None  # decode: [B] context length including this step's token
    lengths_host: list[int] | None = None  # decode per sequence (eager); None = static shapes, lengths on device
    split_k: bool = False  # static decode: the split-K kernel over real lengths (decode_attention.py)
    window: int = 0  # static decode without the kernel: keys 0 .. window - 1 are gathered and masked


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # x: [T, hidden]; variance in fp32 as Qwen2RMSNorm
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _frozen(t: torch.Tensor, dtype: torch.dtype, device: torch.device) -> nn.Parameter:
    return nn.Parameter(t.detach().to(device=device, dtype=dtype).contiguous(), requires_grad=False)


class Qwen2Layer(nn.Module):
    def __init__(self, hf_layer: Any, config: Any, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        attn, mlp = hf_layer.self_attn, hf_layer.mlp
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = attn.head_dim
        self.scale = self.head_dim**-0.5
        self.eps = config.rms_norm_eps
        # [(H + 2 * Hkv) * D, hidden] and its bias: q, k, v stacked in that order
        self.qkv_weight = _frozen(
            torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]), dtype, device
        )
        self.qkv_bias = _frozen(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]), dtype, device)
        self.o_weight = _frozen(attn.o_proj.weight, dtype, device)
        # [2 * intermediate, hidden]: gate then up
        self.gate_up_weight = _frozen(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), dtype, device)
        self.down_weight = _frozen(mlp.down_proj.weight, dtype, device)
        self.input_norm = _frozen(hf_layer.input_layernorm.weight, dtype, device)
        self.post_attention_norm = _frozen(hf_layer.post_attention_layernorm.weight, dtype, device)

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        meta: AttentionMetadata,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> torch.Tensor:
        # hidden: [T, hidden]; cos, sin: [T, 1, D]; k_cache, v_cache: [num_slots + 1, Hkv, max_model_len, D]
        num_tokens = hidden.shape[0]
        h, hkv, d = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = F.linear(_rms_norm(hidden, self.input_norm, self.eps), self.qkv_weight, self.qkv_bias)
        q, k, v = qkv.split([h * d, hkv * d, hkv * d], dim=-1)
        q = q.view(num_tokens, h, d)  # [T, H, D]
        k = k.view(num_tokens, hkv, d)  # [T, Hkv, D]
        v = v.view(num_tokens, hkv, d)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if meta.is_prefill:
            attn = self._prefill_attention(q, k, v, meta, k_cache, v_cache)
        else:
            attn = self._decode_attention(q, k, v, meta, k_cache, v_cache)
        hidden = hidden + F.linear(attn.reshape(num_tokens, h * d), self.o_weight)
        gate, up = F.linear(_rms_norm(hidden, self.post_attention_norm, self.eps), self.gate_up_weight).chunk(2, -1)
        return hidden + F.linear(F.silu(gate) * up, self.down_weight)

    def _prefill_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        meta: AttentionMetadata,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> torch.Tensor:
        assert meta.cu_seqlens is not None and meta.slots_host is not None
        out = torch.empty_like(q)  # [T, H, D]
        for i, slot in enumerate(meta.slots_host):
            start, end = meta.cu_seqlens[i], meta.cu_seqlens[i + 1]
            k_i = k[start:end].transpose(0, 1)  # [Hkv, S, D]
            v_i = v[start:end].transpose(0, 1)
            k_cache[slot, :, : end - start] = k_i
            v_cache[slot, :, : end - start] = v_i
            q_i = q[start:end].transpose(0, 1).unsqueeze(0)  # [1, H, S, D]
            o_i = F.scaled_dot_product_attention(
                q_i, k_i.unsqueeze(0), v_i.unsqueeze(0), is_causal=True, scale=self.scale, enable_gqa=True
            )  # [1, H, S, D]
            out[start:end] = o_i[0].transpose(0, 1)
        return out

    def _decode_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        meta: AttentionMetadata,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
    ) -> torch.Tensor:
        # q: [B, H, D]; k, v: [B, Hkv, D], one new token per sequence at meta.positions
        k_cache[meta.slots, :, meta.positions] = k
        v_cache[meta.slots, :, meta.positions] = v
        if meta.lengths_host is not None:
            assert meta.slots_host is not None
            return per_sequence_attention(q, k_cache, v_cache, meta.slots_host, meta.lengths_host, self.scale)
        assert meta.lengths is not None
        if meta.split_k:
            return split_k_attention(q, k_cache, v_cache, meta.slots, meta.lengths, self.scale)
        return masked_window_attention(q, k_cache, v_cache, meta.slots, meta.lengths, meta.window, self.scale)


class Qwen2Model(nn.Module):
    """Decoder stack + LM head; ``forward`` returns hidden states, ``compute_logits`` the fp32 logits."""

    cos_table: torch.Tensor  # [max_model_len, D] fp32
    sin_table: torch.Tensor

    def __init__(self, hf_model: Any, dtype: torch.dtype, device: torch.device, max_model_len: int) -> None:
        super().__init__()
        config = hf_model.config
        if "sliding_attention" in (getattr(config, "layer_types", None) or ()):
            raise ValueError("sliding-window attention layers are not supported")
        inner = hf_model.model
        self.layers = nn.ModuleList(Qwen2Layer(layer, config, dtype, device) for layer in inner.layers)
        self.embed = _frozen(inner.embed_tokens.weight, dtype, device)  # [V, hidden]
        tied = hf_model.lm_head.weight.data_ptr() == inner.embed_tokens.weight.data_ptr()
        self.lm_head = self.embed if tied else _frozen(hf_model.lm_head.weight, dtype, device)
        self.norm = _frozen(inner.norm.weight, dtype, device)
        self.eps = config.rms_norm_eps
        self.dtype = dtype
        rotary = inner.rotary_emb
        # As Qwen2RotaryEmbedding: fp32 position * inv_freq, cat(freqs, freqs), times attention_scaling
        freqs = torch.arange(max_model_len, dtype=torch.float)[:, None] * rotary.inv_freq.float().cpu()[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)  # [max_model_len, D]
        self.register_buffer("cos_table", (emb.cos() * rotary.attention_scaling).to(device), persistent=False)
        self.register_buffer("sin_table", (emb.sin() * rotary.attention_scaling).to(device), persistent=False)
        first = self.layers[0]
        assert isinstance(first, Qwen2Layer)
        self.kv_shape = KVCacheShape(len(self.layers), first.num_kv_heads, first.head_dim, max_model_len)

    def forward(self, input_ids: torch.Tensor, meta: AttentionMetadata, kv_cache: KVCache) -> torch.Tensor:
        # input_ids: [T] -> hidden: [T, hidden]
        hidden = F.embedding(input_ids, self.embed)
        cos = self.cos_table[meta.positions].to(self.dtype).unsqueeze(1)  # [T, 1, D]
        sin = self.sin_table[meta.positions].to(self.dtype).unsqueeze(1)
        for i, layer in enumerate(self.layers):
            hidden = layer(hidden, cos, sin, meta, kv_cache.k[i], kv_cache.v[i])
        return hidden

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: [N, hidden] (last token of each sequence) -> [N, V] fp32
        return F.linear(_rms_norm(hidden, self.norm, self.eps), self.lm_head).float()
