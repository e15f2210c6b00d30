"""The preallocated per-slot KV cache: one K and one V tensor per layer, a row (slot) per running sequence.

Layout per layer: ``[num_slots + 1, num_kv_heads, max_model_len, head_dim]``. Row ``s`` holds the keys/values of
the sequence in slot ``s`` at positions ``0 .. len - 1``; positions past ``len`` are stale and never read. The
extra last row is scratch: padded rows of a CUDA-graph batch write there, so they cannot touch a live slot.
Slots are handed out by index (``SlotPool``); nothing here is allocated or freed after start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class KVCacheShape:
    num_layers: int
    num_kv_heads: int
    head_dim: int
    max_model_len: int

    def bytes_per_slot(self, dtype: torch.dtype) -> int:
        element_size = torch.empty((), dtype=dtype).element_size()
        # 2 = K and V
        return 2 * self.num_layers * self.num_kv_heads * self.max_model_len * self.head_dim * element_size


def plan_num_slots(
    shape: KVCacheShape,
    dtype: torch.dtype,
    *,
    max_batch_size: int,
    kv_cache_tokens: int | None,
    free_bytes: int | None,
) -> int:
    """How many sequences the cache holds: ``kv_cache_tokens`` if given, else what ``free_bytes`` allows
    (None = no limit known, e.g. on CPU), never more than ``max_batch_size``."""
    if kv_cache_tokens is not None:
        by_capacity = kv_cache_tokens // shape.max_model_len
    elif free_bytes is not None:
        by_capacity = free_bytes // shape.bytes_per_slot(dtype) - 1  # minus the scratch row
    else:
        by_capacity = max_batch_size
    num_slots = min(max_batch_size, by_capacity)
    if num_slots < 1:
        raise RuntimeError("kv cache cannot hold one sequence: lower max_model_len or raise the memory share")
    return num_slots


class KVCache:
    def __init__(self, shape: KVCacheShape, num_slots: int, dtype: torch.dtype, device: torch.device) -> None:
        self.shape = shape
        self.num_slots = num_slots
        self.scratch_slot = num_slots  # the extra row for padding
        rows = (num_slots + 1, shape.num_kv_heads, shape.max_model_len, shape.head_dim)
        # k[layer], v[layer]: [num_slots + 1, Hkv, max_model_len, D]
        self.k = [torch.zeros(rows, dtype=dtype, device=device) for _ in range(shape.num_layers)]
        self.v = [torch.zeros(rows, dtype=dtype, device=device) for _ in range(shape.num_layers)]
