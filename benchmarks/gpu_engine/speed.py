"""Speed rows: the batched engine's core stepped directly at N streams, and the hf engine at one stream.

Batched: N sequences submitted at once (one prefill step, then decode steps of N rows), each ``new_tokens``
long with EOS off; every ``core.step()`` is timed (it ends in the step's one host sync, so the time is the
device's too). TTFT is submit to first token; tok/s is all tokens over the whole run. The hf engine goes through
its ``Engine`` API (``generate`` + streamer, the prototype's way); its ms per decode step is
``(total - ttft) / (tokens - 1)``. One warm-up run precedes every measured one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from benchmarks.stats import percentile
from securechat.engine.base import ChatMessage, GenerationRequest, GenerationStats, SamplingParams
from securechat.engine.batched.sequence import Sequence

if TYPE_CHECKING:
    from securechat.engine.batched.core import EngineCore
    from securechat.engine.hf import HFEngine


@dataclass(frozen=True, slots=True)
class SpeedRow:
    engine: str  # "batched" | "hf"
    attention: str  # how decode attends: "split-k kernel", "masked window", "per-sequence (eager)", "hf sdpa"
    streams: int
    output_tokens: int
    wall_s: float
    tokens_per_s: float  # aggregate over all streams
    ttft_ms_p50: float
    ttft_ms_max: float
    decode_step_ms_p50: float | None
    decode_step_ms_mean: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_attention_label(core: EngineCore) -> str:
    runner = core.runner
    if not (runner.use_graphs or runner.eager_static_decode):
        return "per-sequence (eager)"
    return "split-k kernel" if runner.split_k_decode else "masked window"


def use_static_attention(core: EngineCore, split_k: bool) -> None:
    """Re-capture the decode graphs with the split-K kernel, or with the former masked-window body."""
    runner = core.runner
    runner.split_k_decode = split_k
    runner.graphs.clear()
    runner.graph_logits.clear()
    runner.capture_cuda_graphs()


@dataclass(frozen=True, slots=True)
class _Run:
    seqs: list[Sequence]
    submitted_at: float  # time.perf_counter()
    wall_s: float
    decode_ms: list[float]  # one per decode step


def _run(core: EngineCore, prompts: list[list[int]], new_tokens: int) -> _Run:
    seqs = [Sequence(list(ids), SamplingParams(max_new_tokens=new_tokens), new_tokens) for ids in prompts]
    submitted_at = time.perf_counter()
    for seq in seqs:
        core.add(seq)
    decode_ms: list[float] = []
    while core.has_work:
        step_started = time.perf_counter()
        outputs = core.step()
        if outputs and all(len(out.seq.output_ids) > 1 for out in outputs):  # not the prefill step
            decode_ms.append((time.perf_counter() - step_started) * 1000)
    return _Run(seqs, submitted_at, time.perf_counter() - submitted_at, decode_ms)


def measure_core(core: EngineCore, prompts: list[list[int]], new_tokens: int, warmup_tokens: int) -> SpeedRow:
    _run(core, prompts, warmup_tokens)
    run = _run(core, prompts, new_tokens)
    ttft_ms = [((seq.first_token_at or run.submitted_at) - run.submitted_at) * 1000 for seq in run.seqs]
    output_tokens = sum(len(seq.output_ids) for seq in run.seqs)
    decode_ms = run.decode_ms or [0.0]
    return SpeedRow(
        engine="batched",
        attention=decode_attention_label(core),
        streams=len(prompts),
        output_tokens=output_tokens,
        wall_s=round(run.wall_s, 3),
        tokens_per_s=round(output_tokens / run.wall_s, 1),
        ttft_ms_p50=round(percentile(ttft_ms, 50), 2),
        ttft_ms_max=round(max(ttft_ms), 2),
        decode_step_ms_p50=round(percentile(decode_ms, 50), 3),
        decode_step_ms_mean=round(sum(decode_ms) / len(decode_ms), 3),
    )


async def _generate(engine: HFEngine, messages: tuple[ChatMessage, ...], new_tokens: int) -> GenerationStats:
    request = GenerationRequest(
        request_id="bench", messages=messages, sampling=SamplingParams(max_new_tokens=new_tokens)
    )
    stats = None
    async for chunk in engine.generate(request):
        stats = chunk.stats or stats
    assert stats is not None
    return stats


def run_hf(engine: HFEngine, messages: tuple[ChatMessage, ...], new_tokens: int, warmup_tokens: int) -> SpeedRow:
    async def run() -> GenerationStats:
        await engine.start()
        try:
            await _generate(engine, messages, warmup_tokens)
            return await _generate(engine, messages, new_tokens)
        finally:
            await engine.close()

    stats = asyncio.run(run())
    step_ms = round((stats.total_ms - stats.ttft_ms) / max(1, stats.output_tokens - 1), 3)
    return SpeedRow(
        engine="hf",
        attention=f"hf {engine.config.attn_implementation}",
        streams=1,
        output_tokens=stats.output_tokens,
        wall_s=round(stats.total_ms / 1000, 3),
        tokens_per_s=round(stats.output_tokens / (stats.total_ms / 1000), 1),
        ttft_ms_p50=round(stats.ttft_ms, 2),
        ttft_ms_max=round(stats.ttft_ms, 2),
        decode_step_ms_p50=None,  # per-step times are not visible through the Engine API
        decode_step_ms_mean=step_ms,
    )
