"""Experiment 1: INT8 (bitsandbytes) vs FP16 at 128/256/512 max new tokens on the ~154-token prompt.

On CPU, INT8 and FP16 cannot run (the engines refuse them with a reason, recorded as skipped rows), so FP32 vs
BF16 is measured instead and labelled as such. The batched engine has no INT8 path (bitsandbytes is hf-only).
"""

from __future__ import annotations

import asyncio

from benchmarks.experiments.common import Column, ExperimentResult, Row, RunContext, Scalar
from benchmarks.experiments.engines import engine_settings, measure, started, stats_row
from benchmarks.experiments.prompts import prompt_of_length

NAME = "quantization"
TITLE = "Quantization: INT8 vs FP16 (CPU: FP32 vs BF16 stand-in)"
COLUMNS = (
    Column("Dtype", "dtype"),
    Column("Max gen tokens", "max_new_tokens"),
    Column("input_tokens", "input_tokens", 0),
    Column("output_tokens", "output_tokens", 0),
    Column("ttft_ms", "ttft_ms"),
    Column("total_ms", "total_ms", 0),
    Column("tokens/sec", "tokens_per_sec", 2),
)
# (label, dtype, quantization): the prototype's two, then the CPU stand-ins (skipped rows say why on each side).
VARIANTS = (
    ("INT8", "fp16", "int8"),
    ("FP16", "fp16", "none"),
    ("BF16", "bf16", "none"),
    ("FP32", "fp32", "none"),
)
NO_BATCHED_INT8 = "the batched engine has no INT8 path (bitsandbytes quantization is hf-only)"


def _variants(device: str) -> list[tuple[str, str, str]]:
    if device == "cuda":
        return [v for v in VARIANTS if v[0] != "FP32"]
    # int8 needs CUDA whatever the dtype: ask with fp32 so the reason given is the int8 one, not fp16's.
    return [(label, "fp32" if quant == "int8" else dtype, quant) for label, dtype, quant in VARIANTS]


def _label(dtype_label: str, params: dict[str, Scalar]) -> str:
    return f"{dtype_label} @{params['max_new_tokens']}"


async def _run(ctx: RunContext) -> list[Row]:
    messages, _ = prompt_of_length(ctx.model, ctx.sizes.prompt_tokens["quant"])
    max_tokens = ctx.sizes.quant_max_tokens
    rows: list[Row] = []
    for engine in ctx.engines:
        for label, dtype, quantization in _variants(ctx.device):
            param_sets: list[dict[str, Scalar]] = [
                {"dtype": label, "max_new_tokens": n, "quantization": quantization} for n in max_tokens
            ]
            if engine == "batched" and quantization == "int8":
                rows += [Row.skipped(engine, _label(label, p), NO_BATCHED_INT8, p) for p in param_sets]
                continue
            overrides = {"dtype": dtype, "quantization": quantization} if engine == "hf" else {"dtype": dtype}
            settings = engine_settings(ctx, engine, max(max_tokens), **overrides)
            async with started(settings) as running:
                for params in param_sets:
                    if isinstance(running, str):
                        rows.append(Row.skipped(engine, _label(label, params), running, params))
                        continue
                    stats = await measure(running, messages, int(params["max_new_tokens"]), ctx.sizes.repeats)
                    rows.append(stats_row(engine, _label(label, params), params, stats))
    return rows


def run(ctx: RunContext) -> ExperimentResult:
    params = {"prompt_tokens": ctx.sizes.prompt_tokens["quant"], "max_new_tokens": list(ctx.sizes.quant_max_tokens)}
    notes = [] if ctx.device == "cuda" else ["CPU: INT8 and FP16 cannot run; FP32 vs BF16 is measured instead."]
    rows = asyncio.run(_run(ctx))
    return ExperimentResult(NAME, TITLE, params, rows, COLUMNS, ("tokens_per_sec",), notes)
