"""Experiment 4: worker vs end-to-end latency, per request and per frame, at 1 and N concurrent streams.

The real Serve app serves the long prompt; each request's end-to-end time (client: POST to last byte), frames
and bytes are set beside the worker's own ``total_ms`` from the final frame. The difference is what the
gateway, orchestrator, Ray handles, crypto and HTTP add; at N streams it also holds the time a request waits
for the engine (the hf engine serves one request at a time, so its queueing dominates there).
"""

from __future__ import annotations

from typing import Any

from benchmarks.experiments.app import BenchApp
from benchmarks.experiments.common import Column, ExperimentResult, RunContext
from benchmarks.experiments.http_rows import one_worker_level_rows
from benchmarks.experiments.prompts import prompt_of_length

NAME = "overhead"
TITLE = "Worker vs end-to-end latency (per request and per frame)"
COLUMNS = (
    Column("Streams", "streams"),
    Column("Worker total_ms", "worker_total_ms", 0),
    Column("Gateway e2e ms", "e2e_ms", 0),
    Column("Overhead ms", "overhead_ms", 1),
    Column("Overhead ms/frame", "overhead_ms_per_frame", 3),
    Column("frames", "frames", 0),
    Column("bytes", "bytes", 0),
)
SUMMARIZED = ("e2e_ms", "worker_total_ms", "overhead_ms", "overhead_ms_per_frame")


def run(ctx: RunContext, app: BenchApp) -> ExperimentResult:
    messages, _ = prompt_of_length(ctx.model, ctx.sizes.prompt_tokens["long"])
    max_new_tokens, rounds = ctx.sizes.overhead_max_new_tokens, ctx.sizes.http_rounds
    rows = one_worker_level_rows(
        app, ctx.engines, ctx.sizes.overhead_streams, "stream", messages, max_new_tokens, rounds, SUMMARIZED
    )
    settings: dict[str, Any] = {
        "prompt_tokens": ctx.sizes.prompt_tokens["long"],
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        "streams": list(ctx.sizes.overhead_streams),
    }
    notes = ["Overhead = client e2e - worker total_ms; at N streams it includes waiting for the engine."]
    return ExperimentResult(NAME, TITLE, settings, rows, COLUMNS, ("overhead_ms", "overhead_ms_per_frame"), notes)
