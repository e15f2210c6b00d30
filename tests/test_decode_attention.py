"""The split-K decode kernel against per-sequence SDPA (fp32): under Triton's interpreter on a CPU-only host
(``conftest.py`` sets ``TRITON_INTERPRET=1``), compiled on a CUDA host. A compile for Hopper (sm_90, bf16 and
fp32) runs everywhere, with Triton's bundled ptxas, so the GPU build of the kernel is checked without a GPU.

Keys past each length are NaN, so a kernel that read one would fail. Triton is a dev dependency: if it is
missing these tests fail at import, they never skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import triton  # noqa: F401  (a dev dependency: its absence must fail here, loudly)

from securechat.engine.batched.decode_attention import (
    kernel_available,
    masked_window_attention,
    per_sequence_attention,
    plan_num_splits,
    split_k_attention,
)

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CPU = torch.device("cpu")
MAX_LEN = 112


def _case(
    lengths: list[int], num_heads: int, num_kv_heads: int, head_dim: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """q [B, H, D] and one layer of caches with B + 1 slots (the last one scratch); rows use shuffled slots."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(lengths)
    shape = (batch + 1, num_kv_heads, MAX_LEN, head_dim)
    k_cache = torch.randn(shape, generator=generator)
    v_cache = torch.randn(shape, generator=generator)
    slots = torch.randperm(batch, generator=generator).tolist()
    for slot, length in zip(slots, lengths, strict=True):
        k_cache[slot, :, length:] = float("nan")  # stale positions: never to be read
        v_cache[slot, :, length:] = float("nan")
    k_cache[batch, :, 1:] = float("nan")  # the scratch slot: padded rows attend to its one key
    v_cache[batch, :, 1:] = float("nan")
    q = torch.randn((batch, num_heads, head_dim), generator=generator)
    return q.to(DEVICE), k_cache.to(DEVICE), v_cache.to(DEVICE), slots


def _rows(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, device=DEVICE)


@pytest.mark.parametrize(
    ("num_heads", "num_kv_heads", "head_dim", "num_splits"),
    [(12, 2, 16, 4), (8, 8, 16, 3), (4, 1, 24, 1)],
    ids=["gqa6-4splits", "mha-3splits", "mqa-d24-1split"],
)
def test_kernel_matches_per_sequence_attention(
    num_heads: int, num_kv_heads: int, head_dim: int, num_splits: int
) -> None:
    # Lengths: 1, block edges (16, 17, 64), several blocks per split (100 over 4 splits of 16-key blocks), full.
    lengths = [1, 5, 16, 17, 64, 100, MAX_LEN]
    q, k_cache, v_cache, slots = _case(lengths, num_heads, num_kv_heads, head_dim)
    scratch = k_cache.shape[0] - 1
    rows_lengths = [*lengths, 1, 1]  # two padded rows of a bucket, both on the scratch slot
    rows_slots = [*slots, scratch, scratch]
    q = torch.cat([q, torch.randn((2, num_heads, head_dim), device=DEVICE)])
    expected = per_sequence_attention(q, k_cache, v_cache, rows_slots, rows_lengths, head_dim**-0.5)
    assert not expected.isnan().any()
    assert kernel_available(DEVICE)
    got = split_k_attention(
        q,
        k_cache,
        v_cache,
        _rows(rows_slots),
        _rows(rows_lengths),
        head_dim**-0.5,
        num_splits=num_splits,
        block_n=16,
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_kernel_default_plan_matches_too() -> None:
    lengths = [3, 70, 41]
    q, k_cache, v_cache, slots = _case(lengths, num_heads=4, num_kv_heads=2, head_dim=16, seed=1)
    expected = per_sequence_attention(q, k_cache, v_cache, slots, lengths, 0.25)
    got = split_k_attention(q, k_cache, v_cache, _rows(slots), _rows(lengths), 0.25)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_masked_window_fallback_matches_per_sequence_attention() -> None:
    lengths = [1, 30, 77]
    q, k_cache, v_cache, slots = _case(lengths, num_heads=4, num_kv_heads=2, head_dim=16, seed=2)
    k_cache, v_cache = k_cache.nan_to_num(7.0), v_cache.nan_to_num(-7.0)  # masking zeroes weights, not NaN
    expected = per_sequence_attention(q, k_cache, v_cache, slots, lengths, 0.25)
    got = masked_window_attention(q, k_cache, v_cache, _rows(slots), _rows(lengths), MAX_LEN, 0.25)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_dispatch_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert not kernel_available(CPU)  # the CPU serves with per-sequence attention, never the interpreter
    assert kernel_available(torch.device("cuda"))  # triton is installed: CUDA tensors get the compiled kernel
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert kernel_available(CPU)
    assert not kernel_available(torch.device("cuda"))  # an interpreted kernel cannot be captured in a graph


def test_split_plan_is_static_and_bounded() -> None:
    assert plan_num_splits(4, 2, MAX_LEN, CPU) == 2
    assert plan_num_splits(1, 1, 16, CPU) == 1  # never more splits than 64-key blocks in the window
    assert all(1 <= plan_num_splits(b, 2, 4096, CPU) <= 32 for b in (1, 8, 64))


_COMPILE = """
from triton import compile
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from securechat.engine.batched.triton_decode import combine_kernel, split_kernel

def build(kernel, pointers, constexprs):
    # Qwen2.5-1.5B's decode shape: 12 query heads over 2 KV heads, head_dim 128
    sig = {p.name: "i32" for p in kernel.params if not p.is_constexpr}
    sig.update(pointers)
    sig.update({name: "constexpr" for name in constexprs})
    return compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", 90, 32))

for dtype, precision in (("bf16", "tf32"), ("fp32", "ieee")):
    ptrs = {"q_ptr": "*" + dtype, "k_ptr": "*" + dtype, "v_ptr": "*" + dtype, "slots_ptr": "*i64",
            "lengths_ptr": "*i64", "partial_ptr": "*fp32", "lse_ptr": "*fp32", "qk_scale": "fp32"}
    split = build(split_kernel, ptrs, {"GROUP": 6, "HEAD_DIM": 128, "NUM_SPLITS": 5, "BLOCK_G": 16,
                                       "BLOCK_D": 128, "BLOCK_N": 64, "DOT_PRECISION": precision})
    build(combine_kernel, {"partial_ptr": "*fp32", "lse_ptr": "*fp32", "out_ptr": "*" + dtype},
          {"HEAD_DIM": 128, "NUM_SPLITS": 5, "BLOCK_S": 8, "BLOCK_D": 128})
    print(dtype, "mma" in split.asm["ptx"])
"""


def test_kernel_compiles_for_hopper() -> None:
    # A fresh interpreter without TRITON_INTERPRET: this process's triton interprets (conftest.py).
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", _COMPILE],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["bf16", "True", "fp32", "False"]  # bf16 products on tensor cores (mma)
