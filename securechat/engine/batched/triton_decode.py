"""The two Triton kernels of split-K decode attention ("flash-decoding"); ``decode_attention.py`` launches them
and imports this module only when it does, so the engine imports without triton.

Whether Triton compiles or interprets is fixed for the process when triton is imported (``TRITON_INTERPRET=1``:
its own library functions are decorated then). No ``from __future__ import annotations`` here: Triton reads
``tl.constexpr`` annotations as objects.

Layouts (last dimension contiguous everywhere):
    q        [B, H, D]                        H = Hkv * GROUP, query head h uses KV head h // GROUP
    k, v     [num_slots + 1, Hkv, max_len, D]  one layer of the KV cache; row b reads slot slots[b]
    partial  [B, H, NUM_SPLITS, D] fp32        each split's softmax-normalised output
    lse      [B, H, NUM_SPLITS] fp32           each split's log2-sum-exp2 of its scores; -inf: split had no keys
"""

import triton
import triton.language as tl


@triton.jit
def split_kernel(
    q_ptr: tl.tensor,
    k_ptr: tl.tensor,
    v_ptr: tl.tensor,
    slots_ptr: tl.tensor,
    lengths_ptr: tl.tensor,
    partial_ptr: tl.tensor,
    lse_ptr: tl.tensor,
    stride_qb: int,
    stride_qh: int,
    stride_cs: int,  # cache strides (k and v share them): slot, kv head, position
    stride_ch: int,
    stride_cn: int,
    stride_pb: int,
    stride_ph: int,
    stride_ps: int,
    stride_lb: int,
    stride_lh: int,
    qk_scale: float,  # head_dim ** -0.5 * log2(e): the softmax runs in base 2
    GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    BLOCK_G: tl.constexpr,  # >= GROUP and >= 16 (tl.dot's smallest tile)
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
) -> None:
    # grid (B, Hkv, NUM_SPLITS): the GROUP query heads of one KV head (K/V read once per group) over one split.
    b = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    length = tl.load(lengths_ptr + b)  # read on the device: the grid stays static, no host sync
    slot = tl.load(slots_ptr + b)
    # The real keys [0, length) cut into NUM_SPLITS chunks of whole blocks; trailing splits may be empty.
    chunk = tl.cdiv(tl.cdiv(length, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * chunk
    end = tl.minimum(start + chunk, length)

    offs_g = tl.arange(0, BLOCK_G)
    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    g_mask = offs_g < GROUP
    d_mask = offs_d < HEAD_DIM
    heads = kv_head * GROUP + offs_g
    q = tl.load(
        q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
        mask=g_mask[:, None] & d_mask[None, :],
        other=0.0,
    )  # [BLOCK_G, BLOCK_D]
    k_base = k_ptr + slot * stride_cs + kv_head * stride_ch
    v_base = v_ptr + slot * stride_cs + kv_head * stride_ch

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)  # running max score (log2 units)
    l_i = tl.zeros([BLOCK_G], tl.float32)  # running sum of exp2(score - m_i)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for n0 in range(start, end, BLOCK_N):
        offs = n0 + offs_n
        n_mask = offs < end
        k = tl.load(
            k_base + offs[None, :] * stride_cn + offs_d[:, None],
            mask=d_mask[:, None] & n_mask[None, :],
            other=0.0,
        )  # [BLOCK_D, BLOCK_N]
        scores = tl.dot(q, k, input_precision=DOT_PRECISION) * qk_scale  # [BLOCK_G, BLOCK_N] fp32
        scores = tl.where(n_mask[None, :], scores, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(
            v_base + offs[:, None] * stride_cn + offs_d[None, :],
            mask=n_mask[:, None] & d_mask[None, :],
            other=0.0,
        )  # [BLOCK_N, BLOCK_D]
        # P in the cache dtype for the PV product, accumulated in fp32 (flash-attention's policy)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m_i = m_new

    has_keys = l_i > 0.0
    safe_l = tl.where(has_keys, l_i, 1.0)
    out = acc / safe_l[:, None]  # zeros for an empty split: its weight below is exp2(-inf) = 0
    lse = tl.where(has_keys, m_i + tl.log2(safe_l), float("-inf"))
    partial_rows = partial_ptr + b * stride_pb + heads * stride_ph + split * stride_ps
    tl.store(partial_rows[:, None] + offs_d[None, :], out, mask=g_mask[:, None] & d_mask[None, :])
    tl.store(lse_ptr + b * stride_lb + heads * stride_lh + split, lse, mask=g_mask)


@triton.jit
def combine_kernel(
    partial_ptr: tl.tensor,
    lse_ptr: tl.tensor,
    out_ptr: tl.tensor,
    stride_pb: int,
    stride_ph: int,
    stride_ps: int,
    stride_lb: int,
    stride_lh: int,
    stride_ob: int,
    stride_oh: int,
    HEAD_DIM: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_D: tl.constexpr,
) -> None:
    # grid (B, H): out[b, h] = sum_s w_s * partial[b, h, s] / sum_s w_s, w_s = exp2(lse_s - max lse)
    b = tl.program_id(0)
    h = tl.program_id(1)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    s_mask = offs_s < NUM_SPLITS
    d_mask = offs_d < HEAD_DIM
    lse = tl.load(lse_ptr + b * stride_lb + h * stride_lh + offs_s, mask=s_mask, other=float("-inf"))
    weights = tl.exp2(lse - tl.max(lse, axis=0))  # split 0 always holds keys (length >= 1): the max is finite
    parts = tl.load(
        partial_ptr + b * stride_pb + h * stride_ph + offs_s[:, None] * stride_ps + offs_d[None, :],
        mask=s_mask[:, None] & d_mask[None, :],
        other=0.0,
    )  # [BLOCK_S, BLOCK_D]
    out = tl.sum(parts * weights[:, None], axis=0) / tl.sum(weights, axis=0)
    tl.store(out_ptr + b * stride_ob + h * stride_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=d_mask)
