"""Structured outputs benchmark: what constrained decoding (a JSON schema) costs in tokens/s at 16 streams.

The batched engine as a worker runs it (its core in a child process), the tiny model, 16 concurrent requests
of ``--max-new-tokens`` each, EOS disabled for the unconstrained ones and a schema too long to complete for the
constrained ones, so both kinds run their whole budget in full batches. Rounds alternate unconstrained and
constrained, in the same process; the schema (a title and a list of long notes) is compiled once, in the
warm-up, as a worker compiles it once per schema.

    python -m benchmarks.bench_structured --out benchmarks/results/structured/cpu.json   # make bench-structured

Output: a markdown table, then as the last line ``json_schema/unconstrained tokens/s ratio (16 streams): <x>``.
JSON (``--out``; markdown beside it): {"benchmark", "machine", "streams", "max_new_tokens", "rounds",
"unconstrained": {"tokens_per_s": summary, "tokens": n}, "json_schema": {...}, "ratio_tokens_per_s_p50"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.experiments.common import cpu_model_name
from benchmarks.stats import summarize
from securechat.engine.base import ChatMessage, GenerationRequest, SamplingParams
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.structured.grammar import output_grammar
from securechat.structured.spec import OutputSpec, ResponseFormat
from securechat.tiny_model import TINY_MODEL_NAME, ensure_tiny_model

# Long enough that no answer completes within the budget: both kinds then keep 16 rows in every step, and the
# ratio is the grammar's cost per token, not a smaller batch's (a JSON answer that ends early leaves the batch).
SCHEMA: Final = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 8, "maxLength": 40},
        "notes": {"type": "array", "items": {"type": "string", "minLength": 1000}, "minItems": 1},
    },
    "required": ["title", "notes"],
    "additionalProperties": False,
}
PROMPT: Final = (ChatMessage("user", "Write a long list of notes about bread as JSON."),)


async def _round(
    engine: BatchedEngine, streams: int, max_new_tokens: int, grammar: str | None, seed: int
) -> tuple[int, float]:
    """Output tokens of ``streams`` concurrent requests, and the wall time they took."""

    async def one(index: int) -> int:
        sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, seed=seed * 100 + index)
        request = GenerationRequest(f"b{index}", PROMPT, sampling, grammar=grammar)
        tokens = 0
        async for chunk in engine.generate(request):
            if chunk.stats is not None:
                tokens = chunk.stats.output_tokens
        return tokens

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(i) for i in range(streams)))
    return sum(counts), time.perf_counter() - started


async def run(streams: int, max_new_tokens: int, rounds: int) -> dict[str, Any]:
    ensure_tiny_model()
    config = BatchedEngineConfig(
        model=TINY_MODEL_NAME,
        device="cpu",
        max_batch_size=streams,
        max_input_tokens=256,
        max_new_tokens=max_new_tokens,
        disable_eos=True,
        torch_threads=1,
    )
    engine = BatchedEngine(config)
    await engine.start()
    grammar = output_grammar(OutputSpec(ResponseFormat("json_schema", SCHEMA, "notes")))
    kinds: dict[str, str | None] = {"unconstrained": None, "json_schema": grammar}
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    totals = dict.fromkeys(kinds, 0)
    try:
        await _round(engine, streams, 8, grammar, seed=0)  # warm-up: the grammar compiles here, once
        for number in range(rounds):
            for kind, spec in kinds.items():
                tokens, seconds = await _round(engine, streams, max_new_tokens, spec, seed=number + 1)
                rates[kind].append(tokens / seconds)
                totals[kind] += tokens
                print(f"round {number + 1} {kind:13} {tokens:5} tokens {tokens / seconds:8.1f} tok/s", flush=True)
    finally:
        await engine.close()
    summaries: dict[str, dict[str, Any]] = {
        kind: {"tokens_per_s": summarize(values), "tokens": totals[kind]} for kind, values in rates.items()
    }
    ratio = summaries["json_schema"]["tokens_per_s"]["p50"] / summaries["unconstrained"]["tokens_per_s"]["p50"]
    return {
        "benchmark": "structured",
        "machine": f"{cpu_model_name()}, {os.cpu_count()} cores, no GPU",
        "streams": streams,
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        **summaries,
        "ratio_tokens_per_s_p50": round(ratio, 3),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Structured outputs, {result['streams']} streams x {result['max_new_tokens']} new tokens, "
        f"{result['rounds']} rounds each ({result['machine']}):",
        "",
        "| requests | tokens/s p50 | tokens/s mean | output tokens |",
        "|---|---|---|---|",
    ]
    for kind in ("unconstrained", "json_schema"):
        rate = result[kind]["tokens_per_s"]
        lines.append(f"| {kind} | {rate['p50']:.1f} | {rate['mean']:.1f} | {result[kind]['tokens']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args.streams, args.max_new_tokens, args.rounds))
    table = markdown(result)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table)
    print(f"json_schema/unconstrained tokens/s ratio ({result['streams']} streams): {result['ratio_tokens_per_s_p50']}")


if __name__ == "__main__":
    main()
