"""Build the configured engine: "hf" (the prototype's way) or an injected ``module:Class``."""

from __future__ import annotations

import importlib

from securechat.config import EngineSettings
from securechat.engine.base import Engine


def build_engine(settings: EngineSettings) -> Engine:
    if settings.kind == "hf":
        from securechat.engine.hf import HFEngine, HFEngineConfig  # imports torch: only where it runs

        return HFEngine(
            HFEngineConfig(
                model=settings.model,
                dtype=settings.dtype,
                max_input_tokens=settings.max_input_tokens,
                max_new_tokens=settings.max_new_tokens,
                quantization=settings.quantization,
                attn_implementation=settings.attn_implementation,
                device=settings.device,
                disable_eos=settings.disable_eos,
            )
        )
    if settings.kind == "batched":
        from securechat.engine.batched import BatchedEngine, BatchedEngineConfig  # imports torch: only where it runs

        return BatchedEngine(
            BatchedEngineConfig(
                model=settings.model,
                dtype=settings.dtype,
                device=settings.device,
                max_input_tokens=settings.max_input_tokens,
                max_new_tokens=settings.max_new_tokens,
                disable_eos=settings.disable_eos,
                max_batch_size=settings.max_batch_size,
                max_model_len=settings.max_model_len,
                kv_cache_tokens=settings.kv_cache_tokens,
                gpu_memory_utilization=settings.gpu_memory_utilization,
                use_cuda_graphs=settings.use_cuda_graphs,
                core=settings.core,
                torch_threads=settings.torch_threads,
            )
        )
    module_name, _, class_name = settings.kind.partition(":")
    if not module_name or not class_name:
        raise ValueError("engine kind must be 'hf', 'batched' or 'package.module:EngineClass'")
    engine_cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(engine_cls, type) and issubclass(engine_cls, Engine)):
        raise TypeError("engine kind does not name an Engine subclass")
    engine: Engine = engine_cls(**settings.options)
    return engine
