"""Experiment 2: short / medium / long prompts (~21 / 159 / 408 input tokens), 512 max new tokens."""

from __future__ import annotations

import asyncio

from benchmarks.experiments.common import Column, ExperimentResult, Row, RunContext, Scalar
from benchmarks.experiments.engines import engine_settings, measure, started, stats_row
from benchmarks.experiments.prompts import prompt_of_length

NAME = "prompt_length"
TITLE = "Prompt length: short vs medium vs long"
PROMPTS = ("short", "medium", "long")
COLUMNS = (
    Column("Prompt type", "prompt"),
    Column("input_tokens", "input_tokens", 0),
    Column("output_tokens", "output_tokens", 0),
    Column("ttft_ms", "ttft_ms"),
    Column("total_ms", "total_ms", 0),
    Column("tokens/sec", "tokens_per_sec", 2),
)


async def _run(ctx: RunContext) -> list[Row]:
    prompts = {name: prompt_of_length(ctx.model, ctx.sizes.prompt_tokens[name])[0] for name in PROMPTS}
    max_new_tokens = ctx.sizes.max_new_tokens
    rows: list[Row] = []
    for engine in ctx.engines:
        async with started(engine_settings(ctx, engine, max_new_tokens)) as running:
            for name, messages in prompts.items():
                params: dict[str, Scalar] = {"prompt": name, "target_input_tokens": ctx.sizes.prompt_tokens[name]}
                if isinstance(running, str):
                    rows.append(Row.skipped(engine, name, running, params))
                    continue
                stats = await measure(running, messages, max_new_tokens, ctx.sizes.repeats)
                rows.append(stats_row(engine, name, params, stats))
    return rows


def run(ctx: RunContext) -> ExperimentResult:
    params = {"max_new_tokens": ctx.sizes.max_new_tokens, "dtype": ctx.dtype, "attn_implementation": "sdpa"}
    rows = asyncio.run(_run(ctx))
    return ExperimentResult(NAME, TITLE, params, rows, COLUMNS, ("tokens_per_sec", "ttft_ms"))
