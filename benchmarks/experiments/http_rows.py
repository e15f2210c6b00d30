"""Turning end-to-end results into rows: per-request columns, medians and p50/p90/p99 summaries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from benchmarks.experiments.app import BenchApp
from benchmarks.experiments.common import Row, Scalar, plural
from benchmarks.experiments.http_client import AppClient, HttpResult
from benchmarks.stats import summarize
from securechat.engine.base import ChatMessage


def columns(results: list[HttpResult]) -> dict[str, list[float]]:
    per_request: dict[str, list[float]] = {
        "e2e_ms": [r.e2e_ms for r in results],
        "worker_total_ms": [float(r.worker["total_ms"]) for r in results],
        "worker_ttft_ms": [float(r.worker["ttft_ms"]) for r in results],
        "tokens_per_sec": [float(r.worker["tokens_per_sec"]) for r in results],
        "input_tokens": [float(r.worker["input_tokens"]) for r in results],
        "output_tokens": [float(r.worker["output_tokens"]) for r in results],
        "frames": [float(r.frames) for r in results],
        "bytes": [float(r.num_bytes) for r in results],
    }
    per_request["overhead_ms"] = [
        e - w for e, w in zip(per_request["e2e_ms"], per_request["worker_total_ms"], strict=True)
    ]
    overheads, frames = per_request["overhead_ms"], per_request["frames"]
    per_request["overhead_ms_per_frame"] = [o / f for o, f in zip(overheads, frames, strict=True)]
    return per_request


def http_row(
    engine: str, label: str, params: Mapping[str, Scalar], results: list[HttpResult], summarized: tuple[str, ...]
) -> Row:
    per_request = columns(results)
    row = Row(engine=engine, label=label, params=dict(params))
    row.metrics = {key: summarize(values)["p50"] for key, values in per_request.items()}
    row.metrics["workers_used"] = float(len({r.worker.get("worker_id") for r in results}))
    if len(results) > 1:
        row.summaries = {key: summarize(per_request[key]) for key in summarized}
    return row


def measure_bursts(
    client: AppClient,
    region: str,
    messages: tuple[ChatMessage, ...],
    max_new_tokens: int,
    num_streams: int,
    rounds: int,
) -> tuple[list[float], list[HttpResult]]:
    """One warm-up burst, then ``rounds`` measured ones: each round's wall ms, and every request's result."""
    client.burst(region, messages, max_new_tokens, num_streams)
    walls: list[float] = []
    results: list[HttpResult] = []
    for round_index in range(rounds):
        wall_ms, burst = client.burst(region, messages, max_new_tokens, num_streams, seed=round_index * num_streams)
        walls.append(wall_ms)
        results.extend(burst)
    return walls, results


def burst_row(
    client: AppClient,
    app: BenchApp,
    engine: str,
    workers: int,
    label: str,
    params: Mapping[str, Scalar],
    messages: tuple[ChatMessage, ...],
    max_new_tokens: int,
    burst: int,
    rounds: int,
    summarized: tuple[str, ...],
) -> Row:
    """One row of an HTTP experiment: ``burst`` concurrent requests, ``rounds`` times, to the region running
    ``engine`` on ``workers`` workers (a skipped row if the app has none). Adds the mean burst ``wall_ms`` and
    the ``aggregate_tokens_per_sec`` over all rounds."""
    region = app.region(engine, workers)
    if region is None:
        return Row.skipped(engine, label, missing_region(app, engine, workers), params)
    walls, results = measure_bursts(client, region, messages, max_new_tokens, burst, rounds)
    row = http_row(engine, label, params, results, summarized)
    row.metrics["wall_ms"] = sum(walls) / len(walls)
    row.metrics["aggregate_tokens_per_sec"] = sum(float(r.worker["output_tokens"]) for r in results) / (
        sum(walls) / 1000
    )
    return row


def one_worker_level_rows(
    app: BenchApp,
    engines: Sequence[str],
    levels: Sequence[int],
    noun: str,
    messages: tuple[ChatMessage, ...],
    max_new_tokens: int,
    rounds: int,
    summarized: tuple[str, ...],
) -> list[Row]:
    """One ``burst_row`` per engine and concurrency level (``noun``: "client", "stream"), on one worker."""
    client = AppClient(app.base_url)
    try:
        return [
            burst_row(
                client,
                app,
                engine,
                1,
                plural(level, noun),
                {f"{noun}s": level, "workers": 1},
                messages,
                max_new_tokens,
                level,
                rounds,
                summarized,
            )
            for engine in engines
            for level in levels
        ]
    finally:
        client.close()


def missing_region(app: BenchApp, engine: str, num_workers: int) -> str:
    return f"this app has no {engine} region with {num_workers} worker(s)"
