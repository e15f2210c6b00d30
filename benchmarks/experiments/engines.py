"""Worker-side measurement: drive an engine in this process, as a worker replica does (no Ray, no crypto).

Every configuration gets one warm-up request, then ``repeats`` measured ones; a row's metrics are the medians
(p50) and, with more than one request, ``summaries`` holds p50/p90/p99 from ``benchmarks.stats.summarize``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from benchmarks.experiments.common import Row, RunContext, Scalar
from benchmarks.stats import summarize
from securechat.config import EngineSettings
from securechat.engine.base import ChatMessage, Engine, EngineError, GenerationRequest, GenerationStats, SamplingParams
from securechat.engine.factory import build_engine

STAT_KEYS = ("ttft_ms", "total_ms", "input_tokens", "output_tokens", "tokens_per_sec")
MAX_BATCH_SIZE = 8  # the batched engine's slots when driven directly (one request at a time here)


def engine_settings(ctx: RunContext, kind: str, max_new_tokens: int, **overrides: Any) -> EngineSettings:
    """The profile's engine; ``overrides`` sets dtype, quantization or attn_implementation."""
    fields: dict[str, Any] = {
        "kind": kind,
        "model": ctx.model,
        "dtype": ctx.dtype,
        "device": ctx.device,
        "max_input_tokens": 2048,
        "max_new_tokens": max_new_tokens,
        "disable_eos": ctx.disable_eos,
    }
    if kind == "batched":
        # An explicit KV size: several workers may share one GPU, and the default takes 90% of free memory.
        fields.update(max_batch_size=MAX_BATCH_SIZE, kv_cache_tokens=MAX_BATCH_SIZE * (2048 + max_new_tokens))
    return EngineSettings(**{**fields, **overrides})


@contextlib.asynccontextmanager
async def started(settings: EngineSettings) -> AsyncIterator[Engine | str]:
    """The started engine, or the content-free reason it cannot start here (a skipped row)."""
    try:
        engine = build_engine(settings)
        await engine.start()
    except (EngineError, ValueError) as exc:
        yield str(exc) or type(exc).__name__
        return
    try:
        yield engine
    finally:
        await engine.close()


def request(messages: tuple[ChatMessage, ...], max_new_tokens: int, index: int) -> GenerationRequest:
    # Greedy: both engines then compute the same tokens; the seed only matters if temperature is raised.
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=index)
    return GenerationRequest(request_id=f"bench-{index}", messages=messages, sampling=sampling)


async def run_one(engine: Engine, req: GenerationRequest) -> GenerationStats:
    stats: GenerationStats | None = None
    async for chunk in engine.generate(req):
        stats = chunk.stats or stats
    if stats is None:
        raise RuntimeError("engine ended without stats")
    return stats


async def measure(
    engine: Engine, messages: tuple[ChatMessage, ...], max_new_tokens: int, repeats: int
) -> list[GenerationStats]:
    await run_one(engine, request(messages, max_new_tokens, 0))  # warm-up: allocations, kernel selection
    return [await run_one(engine, request(messages, max_new_tokens, i + 1)) for i in range(repeats)]


def stats_row(engine: str, label: str, params: Mapping[str, Scalar], stats: list[GenerationStats]) -> Row:
    columns = {key: [float(s.as_dict()[key]) for s in stats] for key in STAT_KEYS}
    row = Row(engine=engine, label=label, params=dict(params))
    row.metrics = {key: summarize(values)["p50"] for key, values in columns.items()}
    if len(stats) > 1:
        row.summaries = {key: summarize(columns[key]) for key in ("ttft_ms", "total_ms", "tokens_per_sec")}
    return row


async def measure_row(
    ctx: RunContext,
    settings: EngineSettings,
    label: str,
    params: Mapping[str, Scalar],
    messages: tuple[ChatMessage, ...],
    max_new_tokens: int,
) -> Row:
    async with started(settings) as engine:
        if isinstance(engine, str):
            return Row.skipped(settings.kind, label, engine, params)
        stats = await measure(engine, messages, max_new_tokens, ctx.sizes.repeats)
    return stats_row(settings.kind, label, params, stats)
