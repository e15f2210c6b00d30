"""Serving-path benchmark: the batched engine alone vs the same engine behind the whole Serve app, same run.

"In-process" drives the engine in this process (no Ray, no crypto): N requests at once, 128 new tokens each,
greedy, EOS off. "End to end" starts the Serve app (one worker with the same engine settings) on a local Ray
with free ports, and N clients each seal a request for the worker's keys, POST it to ``/infer`` and open every
frame as it arrives (the client's own checks: order, binding, final frame). The ratio e2e / in-process at each
level is what the serving path costs.

    python -m benchmarks.bench_serving                      # make bench-serving
    python -m benchmarks.bench_serving --levels 1,16 --rounds 1 --out /tmp/serving.json   # quicker

Per level: aggregate tok/s (median round), frames/s and mean tokens per data frame (end to end), and the
client's TTFT (POST sent -> first text opened) p50/p99 over every request of every measured round.
Output: a markdown table, then as the last line ``64-stream e2e/engine ratio: <x>``.
JSON (``--out``; markdown beside it): {"benchmark", "machine", "torch_threads", "max_new_tokens",
"prompt_tokens", "stream": {...} | null, "levels": [{"streams", "engine": {...}, "e2e": {...}, "ratio"}]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx
import torch

from benchmarks.experiments.common import cpu_model_name
from benchmarks.stats import percentile
from securechat.client.messages import build_body
from securechat.config import EngineSettings
from securechat.engine.base import ChatMessage, GenerationRequest, GenerationStats, SamplingParams
from securechat.engine.factory import build_engine
from securechat.envelope import seal_request
from securechat.framing import FrameDecoder
from securechat.keys import RecipientKey, recipients_of
from securechat.stream import ErrorEvent, FinalEvent, ResponseOpener, TextEvent

REGION: Final = "us-west-1"
TENANT: Final = "bench"
MAX_NEW_TOKENS: Final = 128
PROMPT: Final = "Write a long, detailed essay about the history of bridges, rivers and the towns built beside them."
MAX_BATCH_SIZE: Final = 64


def engine_settings(overrides: dict[str, Any] | None = None) -> EngineSettings:
    """The one engine both sides run: the tiny model, batched, EOS off; ``overrides`` from ``--engine``."""
    max_batch_size = MAX_BATCH_SIZE
    settings = EngineSettings(
        kind="batched",
        model="securechat/tiny-qwen2",
        dtype="fp32",
        device="cpu",
        max_input_tokens=512,
        max_new_tokens=MAX_NEW_TOKENS,
        disable_eos=True,
        max_batch_size=max_batch_size,
        kv_cache_tokens=max_batch_size * (512 + MAX_NEW_TOKENS),
        torch_threads=1,  # the tiny model steps fastest on one thread, and Ray gives a worker one anyway
    )
    return settings.model_copy(update=overrides or {})


@dataclass(frozen=True, slots=True)
class RequestResult:
    output_tokens: int
    ttft_ms: float  # engine: from its own stats; e2e: POST sent -> first text opened by the client
    data_frames: int = 0
    wire_frames: int = 0
    worker_ttft_ms: float | None = None  # e2e only: the engine's own TTFT inside the worker (final frame)


@dataclass(frozen=True, slots=True)
class Round:
    wall_s: float
    results: list[RequestResult]

    @property
    def tokens_per_s(self) -> float:
        return sum(r.output_tokens for r in self.results) / self.wall_s


@dataclass
class Level:
    streams: int
    rounds: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        median = sorted(self.rounds, key=lambda r: r.tokens_per_s)[len(self.rounds) // 2]
        ttfts = [r.ttft_ms for rnd in self.rounds for r in rnd.results]
        worker_ttfts = [r.worker_ttft_ms for rnd in self.rounds for r in rnd.results if r.worker_ttft_ms is not None]
        tokens = sum(r.output_tokens for r in median.results)
        data_frames = sum(r.data_frames for r in median.results)
        wire_frames = sum(r.wire_frames for r in median.results)
        return {
            "tokens_per_s": round(median.tokens_per_s, 1),
            "rounds_tokens_per_s": [round(r.tokens_per_s, 1) for r in self.rounds],
            "output_tokens": tokens,
            "frames_per_s": round(wire_frames / median.wall_s, 1),
            "tokens_per_data_frame": round(tokens / data_frames, 2) if data_frames else None,
            "ttft_ms_p50": round(percentile(ttfts, 50), 2),
            "ttft_ms_p99": round(percentile(ttfts, 99), 2),
            "worker_ttft_ms_p50": round(percentile(worker_ttfts, 50), 2) if worker_ttfts else None,
        }


def rounds_for(streams: int, rounds: int) -> int:
    """A single stream is quick: five times the rounds there, so its TTFT percentiles rest on enough requests."""
    return rounds * 5 if streams == 1 else rounds


# -- in-process ------------------------------------------------------------------------------------------------
def _request(index: int) -> GenerationRequest:
    sampling = SamplingParams(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0, seed=index)
    return GenerationRequest(f"bench-{index}", (ChatMessage("user", PROMPT),), sampling)


async def _engine_one(engine: Any, index: int) -> RequestResult:
    stats: GenerationStats | None = None
    async for chunk in engine.generate(_request(index)):
        stats = chunk.stats or stats
    assert stats is not None
    return RequestResult(stats.output_tokens, stats.ttft_ms)


async def measure_engine(
    levels: Sequence[int], rounds: int, engine_overrides: dict[str, Any] | None = None
) -> tuple[dict[int, Level], int]:
    engine = build_engine(engine_settings(engine_overrides))
    await engine.start()
    try:
        prompt_tokens = engine.count_tokens((ChatMessage("user", PROMPT),))
        await asyncio.gather(*(_engine_one(engine, i) for i in range(max(levels))))  # warm-up
        measured: dict[int, Level] = {}
        for streams in levels:
            level = measured[streams] = Level(streams)
            for _ in range(rounds_for(streams, rounds)):
                started = time.perf_counter()
                results = await asyncio.gather(*(_engine_one(engine, i) for i in range(streams)))
                level.rounds.append(Round(time.perf_counter() - started, list(results)))
            print(f"engine    {streams:>3} streams: {level.summary()['tokens_per_s']:>9,.0f} tok/s", flush=True)
        return measured, prompt_tokens
    finally:
        await engine.close()


# -- end to end ------------------------------------------------------------------------------------------------
class ServingClient:
    """Seals, posts and opens every frame as a client does; one connection pool for every stream."""

    def __init__(self, base_url: str, *, prompt: str = PROMPT, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        self._base_url = base_url
        self._prompt, self._max_new_tokens = prompt, max_new_tokens
        limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
        self._http = httpx.AsyncClient(timeout=600, limits=limits)
        self._keys: list[RecipientKey] = []

    async def close(self) -> None:
        await self._http.aclose()

    async def refresh_keys(self) -> None:
        body = (await self._http.get(f"{self._base_url}/v1/keys", params={"region": REGION})).json()
        self._keys = recipients_of(body["workers"])

    async def infer(self, index: int) -> RequestResult:
        body = build_body(self._prompt, max_new_tokens=self._max_new_tokens, temperature=0.0, seed=index)
        sealed = seal_request(
            body, request_id=uuid.uuid4().hex, tenant_id=TENANT, mode="plain", region=REGION, recipients=self._keys
        )
        payload = {"tenant_id": TENANT, "mode": "plain", "region": REGION, "envelope": sealed.envelope.to_dict()}
        opener = ResponseOpener.for_request(sealed.dek, sealed.request_id)
        decoder = FrameDecoder()
        first_text_at: float | None = None
        wire_frames = data_frames = output_tokens = 0
        worker_ttft_ms = 0.0
        started = time.perf_counter()
        async with self._http.stream("POST", f"{self._base_url}/infer", json=payload) as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(f"/infer answered {response.status_code}: {response.text[:200]}")
            async for chunk in response.aiter_raw():
                for frame in decoder.feed(chunk):
                    wire_frames += 1
                    event = opener.open(frame)
                    if isinstance(event, TextEvent):
                        data_frames += 1
                        if first_text_at is None and event.text:
                            first_text_at = time.perf_counter()
                    elif isinstance(event, FinalEvent):
                        output_tokens = int(event.metrics["output_tokens"])
                        worker_ttft_ms = float(event.metrics["ttft_ms"])
                    elif isinstance(event, ErrorEvent):
                        raise RuntimeError(f"stream failed: {event.code}")
        decoder.close()
        opener.finish()
        assert first_text_at is not None
        ttft_ms = (first_text_at - started) * 1000
        return RequestResult(output_tokens, ttft_ms, data_frames, wire_frames, worker_ttft_ms)


async def _burst(client: ServingClient, streams: int) -> Round:
    started = time.perf_counter()
    results = await asyncio.gather(*(client.infer(i) for i in range(streams)))
    return Round(time.perf_counter() - started, list(results))


async def _drive(base_url: str, levels: Sequence[int], rounds: int) -> dict[int, Level]:
    client = ServingClient(base_url)
    try:
        await client.refresh_keys()
        await _burst(client, max(levels))  # warm-up
        measured: dict[int, Level] = {}
        for streams in levels:
            level = measured[streams] = Level(streams)
            for _ in range(rounds_for(streams, rounds)):
                level.rounds.append(await _burst(client, streams))
            print(f"e2e       {streams:>3} streams: {level.summary()['tokens_per_s']:>9,.0f} tok/s", flush=True)
        return measured
    finally:
        await client.close()


def app_args(stream: dict[str, Any] | None, engine_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    unlimited = {"max_concurrent_streams": 1024, "requests_per_minute": 1_000_000, "tokens_per_minute": 10**9}
    args: dict[str, Any] = {
        "regions": [{"name": REGION, "num_replicas": 1}],
        "engine": engine_settings(engine_overrides).model_dump(mode="json", exclude={"options"}),
        "dispatch": {"choose_timeout_s": 600, "max_in_flight": 4096},
        "auth": {"mode": "disabled"},
        "tenants": {"default_policy": unlimited},
    }
    if stream is not None:
        args["stream"] = stream
    return args


def measure_end_to_end(
    levels: Sequence[int], rounds: int, stream: dict[str, Any] | None, engine_overrides: dict[str, Any] | None = None
) -> dict[int, Level]:
    from deployments.local import start_local, stop_local

    app = start_local(app_args(stream, engine_overrides))
    try:
        return asyncio.run(_drive(app.base_url, levels, rounds))
    finally:
        stop_local()


# -- report ----------------------------------------------------------------------------------------------------
def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Serving path: batched engine in-process vs end to end ({report['machine']})",
        "",
        f"Tiny model, fp32, 1 worker, {report['max_new_tokens']} new tokens per request, greedy, EOS off, "
        f"prompt {report['prompt_tokens']} tokens; in-process torch threads: {report['torch_threads']}; "
        f"stream settings: {json.dumps(report['stream']) if report['stream'] else 'the code default'}; "
        f"engine overrides: {json.dumps(report['engine_overrides']) if report['engine_overrides'] else 'none'}.",
        "",
        "| streams | engine in-process tok/s | end to end tok/s | ratio | e2e frames/s | tokens per data frame "
        "| e2e TTFT p50 ms | e2e TTFT p99 ms | engine TTFT p50 ms (in-process / in the worker) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["levels"]:
        engine, e2e = row["engine"], row["e2e"]
        lines.append(
            f"| {row['streams']} | {engine['tokens_per_s']:,.0f} | {e2e['tokens_per_s']:,.0f} | {row['ratio']:.2f} "
            f"| {e2e['frames_per_s']:,.0f} | {e2e['tokens_per_data_frame']} | {e2e['ttft_ms_p50']:.1f} "
            f"| {e2e['ttft_ms_p99']:.1f} | {engine['ttft_ms_p50']:.1f} / {e2e['worker_ttft_ms_p50']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", default="1,16,64", help="comma-separated numbers of concurrent streams")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per level (after one warm-up)")
    parser.add_argument("--stream", default=None, help="JSON for the app's \"stream\" settings (default: the code's)")
    parser.add_argument("--engine", default=None, help="JSON overrides of the engine settings, both sides")
    parser.add_argument("--out", type=Path, default=None, help="JSON path; the markdown table goes beside it")
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]
    stream = json.loads(args.stream) if args.stream else None
    overrides = json.loads(args.engine) if args.engine else None

    engine_levels, prompt_tokens = asyncio.run(measure_engine(levels, args.rounds, overrides))
    e2e_levels = measure_end_to_end(levels, args.rounds, stream, overrides)
    report: dict[str, Any] = {
        "benchmark": "serving",
        "machine": f"{cpu_model_name()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompt_tokens": prompt_tokens,
        "stream": stream,
        "engine_overrides": overrides,
        "levels": [],
    }
    for streams in levels:
        engine, e2e = engine_levels[streams].summary(), e2e_levels[streams].summary()
        ratio = round(e2e["tokens_per_s"] / engine["tokens_per_s"], 3)
        report["levels"].append({"streams": streams, "engine": engine, "e2e": e2e, "ratio": ratio})
    table = markdown(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table)
    print(table)
    last = report["levels"][-1]
    print(f"{last['streams']}-stream e2e/engine ratio: {last['ratio']:.2f}")


if __name__ == "__main__":
    main()
