"""CPU benchmark: the ``batched`` engine vs the ``hf`` engine on the tiny model, 16 concurrent requests.

The hf engine serves one request at a time (``max_concurrent_requests = 1``), so its 16 requests run back to
back; the batched engine gets all 16 at once. EOS is disabled on both and every request asks for the same
``--max-new-tokens``, so both generate exactly the same number of tokens. Seeded sampling (one seed per
request), a warm-up round per engine, then ``--repeats`` measured rounds; the median round is reported.

Output: a markdown table, then as the last line ``batched/hf aggregate tokens/s ratio: <x>x``.
JSON (``--out``): {"benchmark", "device", "model", "num_requests", "max_new_tokens", "repeats",
"torch_threads", "engines": {name: {"wall_s", "output_tokens", "aggregate_tokens_per_s", "ttft_ms_p50",
"ttft_ms_p95", "total_ms_p50", "rounds_tokens_per_s"}}, "ratio"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from benchmarks.stats import percentile
from securechat.engine.base import ChatMessage, Engine, GenerationRequest, GenerationStats, SamplingParams
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.engine.hf import HFEngine, HFEngineConfig
from securechat.tiny_model import TINY_MODEL_NAME, ensure_tiny_model

SEED = 1234
TOPICS = (
    "bread",
    "trains",
    "the moon",
    "rivers",
    "kites",
    "libraries",
    "winter",
    "photosynthesis",
    "a harbour at dawn",
    "counting coins",
    "the weather",
    "a stone bridge",
    "machine learning",
    "a market",
    "storms",
    "good writing",
)


@dataclass(frozen=True, slots=True)
class Round:
    wall_s: float
    stats: list[GenerationStats]

    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.stats)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s


def make_requests(num_requests: int, max_new_tokens: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(
            request_id=f"bench-{i}",
            messages=(ChatMessage("user", f"Tell me a short story about {TOPICS[i % len(TOPICS)]}."),),
            sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=0.8, top_p=0.95, seed=SEED + i),
        )
        for i in range(num_requests)
    ]


async def run_one(engine: Engine, request: GenerationRequest) -> GenerationStats:
    stats: GenerationStats | None = None
    async for chunk in engine.generate(request):
        stats = chunk.stats or stats
    assert stats is not None
    return stats


async def serve_sequentially(engine: Engine, requests: list[GenerationRequest]) -> list[GenerationStats]:
    return [await run_one(engine, request) for request in requests]


async def serve_concurrently(engine: Engine, requests: list[GenerationRequest]) -> list[GenerationStats]:
    return list(await asyncio.gather(*(run_one(engine, request) for request in requests)))


Server = Callable[[Engine, list[GenerationRequest]], Awaitable[list[GenerationStats]]]


async def measure(engine: Engine, serve: Server, requests: list[GenerationRequest], repeats: int) -> list[Round]:
    await serve(engine, requests)  # warm-up: first-call costs (kernel selection, allocations)
    rounds = []
    for _ in range(repeats):
        started = time.perf_counter()
        stats = await serve(engine, requests)
        rounds.append(Round(time.perf_counter() - started, stats))
    return rounds


def summarise(rounds: list[Round]) -> dict[str, Any]:
    median = sorted(rounds, key=lambda r: r.tokens_per_s)[len(rounds) // 2]
    return {
        "wall_s": round(median.wall_s, 3),
        "output_tokens": median.output_tokens,
        "aggregate_tokens_per_s": round(median.tokens_per_s, 1),
        "ttft_ms_p50": round(percentile([s.ttft_ms for s in median.stats], 50), 2),
        "ttft_ms_p95": round(percentile([s.ttft_ms for s in median.stats], 95), 2),
        "total_ms_p50": round(percentile([s.total_ms for s in median.stats], 50), 2),
        "rounds_tokens_per_s": [round(r.tokens_per_s, 1) for r in rounds],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(SEED)
    requests = make_requests(args.num_requests, args.max_new_tokens)
    common: dict[str, Any] = {
        "model": TINY_MODEL_NAME,
        "dtype": "fp32",
        "device": "cpu",
        "max_input_tokens": 256,
        "max_new_tokens": args.max_new_tokens,
        "disable_eos": True,
    }
    hf = HFEngine(HFEngineConfig(**common))
    batched = BatchedEngine(BatchedEngineConfig(**common, max_batch_size=args.num_requests))
    results: dict[str, Any] = {}
    for name, engine, serve in (("hf", hf, serve_sequentially), ("batched", batched, serve_concurrently)):
        await engine.start()
        try:
            results[name] = summarise(await measure(engine, serve, requests, args.repeats))
        finally:
            await engine.close()
    for name, summary in results.items():
        expected = args.num_requests * args.max_new_tokens
        if summary["output_tokens"] != expected:
            raise SystemExit(f"{name} generated {summary['output_tokens']} tokens, expected {expected}")
    return {
        "benchmark": "engines_cpu",
        "device": "cpu",
        "model": TINY_MODEL_NAME,
        "num_requests": args.num_requests,
        "max_new_tokens": args.max_new_tokens,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "engines": results,
        "ratio": round(results["batched"]["aggregate_tokens_per_s"] / results["hf"]["aggregate_tokens_per_s"], 2),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        "| engine | serving | requests | tokens | wall s | aggregate tok/s | TTFT p50 ms | TTFT p95 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, how in (("hf", "one at a time"), ("batched", "all concurrent")):
        r = report["engines"][name]
        lines.append(
            f"| {name} | {how} | {report['num_requests']} | {r['output_tokens']} | {r['wall_s']} | "
            f"{r['aggregate_tokens_per_s']} | {r['ttft_ms_p50']} | {r['ttft_ms_p95']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-requests", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu-engines.json"))
    args = parser.parse_args()
    ensure_tiny_model()
    report = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"batched/hf aggregate tokens/s ratio: {report['ratio']:.1f}x")


if __name__ == "__main__":
    main()
