"""Decode attention: one new query token per sequence against that sequence's slot of the KV cache.

Shapes: q ``[B, H, D]``; ``k_cache``, ``v_cache`` one layer, ``[num_slots + 1, Hkv, max_model_len, D]``
(kv_cache.py); ``slots``, ``lengths`` ``[B]`` int64. Row ``b`` attends to ``k_cache[slots[b], :, :lengths[b]]``
(lengths >= 1: a padded row of a CUDA-graph batch attends to one key of the scratch slot). GQA: query head
``h`` reads KV head ``h // (H // Hkv)``.

Three ways, one result:

- ``per_sequence_attention`` (lengths on the host; the CPU eager path and the reference): SDPA per sequence
  over a *view* ``[:len]`` of its slot; reads exactly the real keys, copies nothing, native GQA.
- ``split_k_attention`` (lengths on the device; the CUDA-graph body): a Triton "flash-decoding" kernel. CUDA
  graphs need static shapes, so the graph body cannot slice ``[:len]``; the former body gathered every slot
  over the whole ``max_model_len`` window (``index_select``) and masked it, copying B x window x layers of
  K/V per step (GBs at batch 64 with a 4k window). Here the grid is static, ``(B, Hkv, num_splits)``: each
  program reads its sequence's length and slot from device memory (no host sync), takes one of
  ``num_splits`` equal chunks of ``[0, length)`` and streams only those keys, for all query heads of one KV
  head (K/V read once per GQA group). A second kernel merges the splits by their log-sum-exp.
  Numerics as SDPA's fused kernels and ``model.py``: scores and softmax in fp32, P in the cache dtype for the
  PV product, output in q's dtype.
- ``masked_window_attention`` (the fallback where the kernel is unavailable): gather the slots up to a static
  ``window`` and mask past each length.

Why Triton: flash-attn (``flash_attn_with_kvcache`` with ``cache_seqlens``) is not installed on our GPU hosts;
FlexAttention needs ``torch.compile`` (whose cudagraph trees are thread-local: PERF.md) and a query batch that
matches the KV batch, i.e. the gather by slot this module exists to remove. A Triton kernel is ~80 lines, reads
slot rows in place, and runs on the CPU under Triton's interpreter, so CPU tests check it.

Dispatch (``kernel_available``, decided once by the runner): with triton installed, tensors on CUDA get the
compiled kernel; tensors on the CPU get it only under Triton's own interpreter setting, ``TRITON_INTERPRET=1``
(tests; far too slow to serve). The setting holds for the whole process from triton's import on, and an
interpreted kernel cannot be captured in a CUDA graph, so under it CUDA gets the fallback. Otherwise the
caller takes ``masked_window_attention``.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from typing import Final

import torch
import torch.nn.functional as F

BLOCK_N: Final = 64  # keys per inner step of the kernel
MAX_SPLITS: Final = 32
_PROGRAMS_PER_SM: Final = 4  # enough resident programs to hide memory latency
_INTERPRET_ENV: Final = "TRITON_INTERPRET"  # Triton's own setting, read when triton is imported


def per_sequence_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slots_host: list[int],
    lengths_host: list[int],
    scale: float,
) -> torch.Tensor:
    out = torch.empty_like(q)
    for i, (slot, length) in enumerate(zip(slots_host, lengths_host, strict=True)):
        out[i] = F.scaled_dot_product_attention(
            q[i].unsqueeze(0).unsqueeze(2),  # [1, H, 1, D]
            k_cache[slot, :, :length].unsqueeze(0),  # [1, Hkv, len, D], a view
            v_cache[slot, :, :length].unsqueeze(0),
            scale=scale,
            enable_gqa=True,
        )[0, :, 0]
    return out


def masked_window_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slots: torch.Tensor,
    lengths: torch.Tensor,
    window: int,
    scale: float,
) -> torch.Tensor:
    keys = k_cache[:, :, :window].index_select(0, slots)  # [B, Hkv, W, D]
    values = v_cache[:, :, :window].index_select(0, slots)
    arange = torch.arange(window, device=q.device)
    mask = (arange[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, W]
    out = F.scaled_dot_product_attention(
        q.unsqueeze(2), keys, values, attn_mask=mask, scale=scale, enable_gqa=True
    )  # [B, H, 1, D]
    return out[:, :, 0]


def kernel_available(device: torch.device) -> bool:
    """Whether ``split_k_attention`` runs for tensors on ``device`` (see the module docstring)."""
    if not _triton_installed():
        return False
    return _interpreting() if device.type == "cpu" else device.type == "cuda" and not _interpreting()


def split_k_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slots: torch.Tensor,
    lengths: torch.Tensor,
    scale: float,
    *,
    num_splits: int | None = None,
    block_n: int = BLOCK_N,
) -> torch.Tensor:
    """Attention over each row's real length; static launch shapes, so it can be captured in a CUDA graph.
    ``num_splits`` defaults to ``plan_num_splits``; both are fixed per (batch, cache shape)."""
    batch, num_heads, head_dim = q.shape
    _, num_kv_heads, max_len, _ = k_cache.shape
    if num_heads % num_kv_heads or k_cache.stride() != v_cache.stride() or q.stride(-1) != 1:
        raise ValueError("need H divisible by Hkv, k and v caches of one layout, q contiguous in D")
    if k_cache.stride(-1) != 1 or slots.dtype != torch.long or lengths.dtype != torch.long:
        raise ValueError("need caches contiguous in D and int64 slots and lengths")
    splits = num_splits if num_splits is not None else plan_num_splits(batch, num_kv_heads, max_len, q.device)
    group = num_heads // num_kv_heads
    block_d = max(16, _next_power_of_2(head_dim))
    partial = torch.empty((batch, num_heads, splits, head_dim), dtype=torch.float32, device=q.device)
    lse = torch.empty((batch, num_heads, splits), dtype=torch.float32, device=q.device)
    out = torch.empty_like(q)
    from securechat.engine.batched.triton_decode import combine_kernel, split_kernel

    split_kernel[(batch, num_kv_heads, splits)](
        q,
        k_cache,
        v_cache,
        slots,
        lengths,
        partial,
        lse,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        partial.stride(0),
        partial.stride(1),
        partial.stride(2),
        lse.stride(0),
        lse.stride(1),
        scale * math.log2(math.e),
        GROUP=group,
        HEAD_DIM=head_dim,
        NUM_SPLITS=splits,
        BLOCK_G=max(16, _next_power_of_2(group)),
        BLOCK_D=block_d,
        BLOCK_N=block_n,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",  # fp32 engines get fp32 products, no TF32
    )
    combine_kernel[(batch, num_heads)](
        partial,
        lse,
        out,
        partial.stride(0),
        partial.stride(1),
        partial.stride(2),
        lse.stride(0),
        lse.stride(1),
        out.stride(0),
        out.stride(1),
        HEAD_DIM=head_dim,
        NUM_SPLITS=splits,
        BLOCK_S=max(2, _next_power_of_2(splits)),
        BLOCK_D=block_d,
    )
    return out


def plan_num_splits(batch: int, num_kv_heads: int, max_len: int, device: torch.device) -> int:
    """Splits per (row, KV head): about ``_PROGRAMS_PER_SM`` programs per SM over the whole grid, at most one
    per ``BLOCK_N`` keys of the window. A host-side rule of static numbers: the same for every replay. On the
    CPU (interpreter, tests) two, enough to exercise the merge."""
    programs = batch * num_kv_heads
    if device.type == "cuda":
        target = _PROGRAMS_PER_SM * _num_sms(device.index if device.index is not None else torch.cuda.current_device())
    else:
        target = 2 * programs
    return max(1, min(MAX_SPLITS, -(-max_len // BLOCK_N), -(-target // programs)))


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _interpreting() -> bool:
    return os.environ.get(_INTERPRET_ENV) == "1"


@functools.cache
def _triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _num_sms(device_index: int) -> int:
    return int(torch.cuda.get_device_properties(device_index).multi_processor_count)
