"""Settings of the batched engine: one frozen dataclass, checked once at construction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

Dtype = Literal["fp16", "bf16", "fp32"]
CoreLocation = Literal["process", "thread"]

DEFAULT_DECODE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64)
_DTYPES: Final = ("fp16", "bf16", "fp32")
_DEVICE_PATTERN: Final = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchedEngineConfig:
    model: str  # hub id, local dir, or TINY_MODEL_NAME
    dtype: Dtype = "fp32"
    device: str = "auto"  # "auto" (= "cuda" when available, else "cpu"), "cpu", "cuda" or "cuda:N"
    max_batch_size: int = 64  # running sequences per step, also Engine.max_concurrent_requests
    max_input_tokens: int = 2048  # prompt tokens after the chat template
    max_new_tokens: int = 512  # cap on SamplingParams.max_new_tokens
    max_model_len: int | None = None  # tokens per KV slot; None = max_input_tokens + max_new_tokens
    kv_cache_tokens: int | None = None  # KV capacity in tokens; None = sized from memory (see kv_cache.py)
    gpu_memory_utilization: float = 0.9  # share of free GPU memory the KV cache may take when kv_cache_tokens is None
    use_cuda_graphs: bool = True  # ignored on CPU
    decode_buckets: tuple[int, ...] = DEFAULT_DECODE_BUCKETS  # batch sizes captured as CUDA graphs
    disable_eos: bool = False  # always generate max_new_tokens (benchmarks with random weights)
    core: CoreLocation = "process"  # step the model in a child process (no GIL shared with the event loop)
    torch_threads: int | None = None  # torch's intra-op threads where the model steps; None: torch's default

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must be set")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}")
        if not _DEVICE_PATTERN.match(self.device):
            raise ValueError("device must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        if self.max_input_tokens < 1:
            raise ValueError("max_input_tokens must be >= 1")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.max_model_len is not None and self.max_model_len < self.max_input_tokens + self.max_new_tokens:
            raise ValueError("max_model_len must be >= max_input_tokens + max_new_tokens")
        if self.kv_cache_tokens is not None and self.kv_cache_tokens < self.context_len:
            raise ValueError("kv_cache_tokens must hold at least one full sequence (max_model_len tokens)")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        if self.core not in ("process", "thread"):
            raise ValueError("core must be 'process' or 'thread'")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError("torch_threads must be >= 1")
        buckets = self.decode_buckets
        if not buckets or any(b < 1 for b in buckets) or list(buckets) != sorted(set(buckets)):
            raise ValueError("decode_buckets must be strictly increasing positive batch sizes")

    @property
    def context_len(self) -> int:
        """Tokens one KV slot holds: the longest prompt plus the longest completion."""
        return self.max_model_len if self.max_model_len is not None else self.max_input_tokens + self.max_new_tokens
