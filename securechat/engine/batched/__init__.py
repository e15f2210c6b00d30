"""The batched engine: continuous batching over a per-slot KV cache, CUDA graphs for decode on a GPU."""

from securechat.engine.batched.config import BatchedEngineConfig
from securechat.engine.batched.engine import BatchedEngine

__all__ = ["BatchedEngine", "BatchedEngineConfig"]
