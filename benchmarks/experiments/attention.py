"""Experiment 3: attention backends on the long prompt: hf with flash_attention_2 / sdpa / eager, beside the
batched engine's own attention (SDPA with native GQA). flash_attention_2 needs CUDA and the flash_attn
package; where either is missing the row is skipped with the engine's reason."""

from __future__ import annotations

import asyncio

from benchmarks.experiments.common import Column, ExperimentResult, Row, RunContext
from benchmarks.experiments.engines import engine_settings, measure_row
from benchmarks.experiments.prompts import prompt_of_length

NAME = "attention"
TITLE = "Attention backend: FlashAttention2 vs SDPA (vs eager), long prompt"
HF_BACKENDS = ("flash_attention_2", "sdpa", "eager")
BATCHED_LABEL = "own (SDPA, native GQA)"
COLUMNS = (
    Column("Attention backend", "attention"),
    Column("input_tokens", "input_tokens", 0),
    Column("output_tokens", "output_tokens", 0),
    Column("ttft_ms", "ttft_ms"),
    Column("total_ms", "total_ms", 0),
    Column("tokens/sec", "tokens_per_sec", 2),
)


async def _run(ctx: RunContext) -> list[Row]:
    messages, _ = prompt_of_length(ctx.model, ctx.sizes.prompt_tokens["long"])
    max_new_tokens = ctx.sizes.max_new_tokens
    rows: list[Row] = []
    if "hf" in ctx.engines:
        for backend in HF_BACKENDS:
            # flash_attention_2 refuses fp32; on CPU the dtype check names the real blocker (CUDA) first anyway.
            settings = engine_settings(ctx, "hf", max_new_tokens, attn_implementation=backend)
            rows.append(await measure_row(ctx, settings, backend, {"attention": backend}, messages, max_new_tokens))
    if "batched" in ctx.engines:
        settings = engine_settings(ctx, "batched", max_new_tokens)
        params = {"attention": BATCHED_LABEL}
        rows.append(await measure_row(ctx, settings, BATCHED_LABEL, params, messages, max_new_tokens))
    return rows


def run(ctx: RunContext) -> ExperimentResult:
    params = {"prompt_tokens": ctx.sizes.prompt_tokens["long"], "max_new_tokens": ctx.sizes.max_new_tokens}
    rows = asyncio.run(_run(ctx))
    return ExperimentResult(NAME, TITLE, params, rows, COLUMNS, ("tokens_per_sec",))
