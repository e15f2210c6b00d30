"""Experiment 5: 1 / 2 / 4 parallel clients on one worker, over HTTP (~248-token prompt).

Worker-side: each request's ``total_ms`` and tokens/s from its final frame. End-to-end: each request's
gateway time. The hf engine runs one request at a time (end-to-end grows with clients, as in the prototype);
the batched engine runs them together in one batch.
"""

from __future__ import annotations

from typing import Any

from benchmarks.experiments.app import BenchApp
from benchmarks.experiments.common import Column, ExperimentResult, RunContext
from benchmarks.experiments.http_rows import one_worker_level_rows
from benchmarks.experiments.prompts import prompt_of_length

NAME = "concurrency"
TITLE = "Concurrency on a single worker"
COLUMNS = (
    Column("Parallel clients", "clients"),
    Column("worker total_ms (per req)", "worker_total_ms", 0),
    Column("tokens/sec", "tokens_per_sec", 2),
    Column("input_tokens", "input_tokens", 0),
    Column("output_tokens", "output_tokens", 0),
    Column("gateway total_ms per request", "e2e_ms", 0),
    Column("aggregate tok/s", "aggregate_tokens_per_sec", 1),
)
SUMMARIZED = ("worker_total_ms", "tokens_per_sec", "e2e_ms")


def run(ctx: RunContext, app: BenchApp) -> ExperimentResult:
    messages, _ = prompt_of_length(ctx.model, ctx.sizes.prompt_tokens["concurrency"])
    max_new_tokens, rounds = ctx.sizes.http_max_new_tokens, ctx.sizes.http_rounds
    rows = one_worker_level_rows(
        app, ctx.engines, ctx.sizes.concurrency_levels, "client", messages, max_new_tokens, rounds, SUMMARIZED
    )
    settings: dict[str, Any] = {
        "prompt_tokens": ctx.sizes.prompt_tokens["concurrency"],
        "max_new_tokens": max_new_tokens,
        "rounds": rounds,
        "levels": list(ctx.sizes.concurrency_levels),
    }
    return ExperimentResult(NAME, TITLE, settings, rows, COLUMNS, ("e2e_ms", "aggregate_tokens_per_sec"))
