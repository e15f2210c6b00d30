"""Experiment 6: 4 concurrent requests on 2 workers vs 1 worker: wall time until all four are done.

The prototype ran two worker processes on one GPU with round-robin dispatch; here the orchestrator picks
replicas (Serve's router). Both workers share the same device (one GPU, or this machine's cores).
"""

from __future__ import annotations

from benchmarks.experiments.app import BenchApp
from benchmarks.experiments.common import Column, ExperimentResult, Row, RunContext, plural
from benchmarks.experiments.http_client import AppClient
from benchmarks.experiments.http_rows import burst_row
from benchmarks.experiments.prompts import SHORT_PROMPT
from securechat.engine.base import ChatMessage

NAME = "multi_worker"
TITLE = "Multi-worker scaling: 4 concurrent requests, 2 workers vs 1"
WORKER_COUNTS = (1, 2)
COLUMNS = (
    Column("Workers", "workers"),
    Column("total_ms (per req)", "worker_total_ms", 0),
    Column("tokens/sec", "tokens_per_sec", 2),
    Column("input_tokens", "input_tokens", 0),
    Column("output_tokens", "output_tokens", 0),
    Column("workers used", "workers_used", 0),
    Column("wall ms (all requests)", "wall_ms", 0),
    Column("speed-up vs 1 worker", "speedup", 2),
)
SUMMARIZED = ("worker_total_ms", "tokens_per_sec", "e2e_ms")


def run(ctx: RunContext, app: BenchApp) -> ExperimentResult:
    messages = (ChatMessage("user", SHORT_PROMPT),)
    max_new_tokens, rounds = ctx.sizes.http_max_new_tokens, ctx.sizes.http_rounds
    num_requests = ctx.sizes.multi_worker_requests
    rows: list[Row] = []
    client = AppClient(app.base_url)
    try:
        for engine in ctx.engines:
            one_worker_wall: float | None = None
            for workers in WORKER_COUNTS:
                params = {"workers": workers, "requests": num_requests}
                label = plural(workers, "worker")
                row = burst_row(
                    client,
                    app,
                    engine,
                    workers,
                    label,
                    params,
                    messages,
                    max_new_tokens,
                    num_requests,
                    rounds,
                    SUMMARIZED,
                )
                rows.append(row)
                if "wall_ms" not in row.metrics:
                    continue  # skipped
                one_worker_wall = row.metrics["wall_ms"] if workers == 1 else one_worker_wall
                if one_worker_wall is not None:
                    row.metrics["speedup"] = one_worker_wall / row.metrics["wall_ms"]
    finally:
        client.close()
    params = {"requests": num_requests, "max_new_tokens": max_new_tokens, "rounds": rounds}
    return ExperimentResult(NAME, TITLE, params, rows, COLUMNS, ("wall_ms",))
