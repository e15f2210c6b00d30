"""Running a set of experiments: engine ones first (nothing else busy), then the Serve app for the HTTP ones."""

from __future__ import annotations

import functools
import importlib
import logging
import time
from collections.abc import Callable
from typing import Any

from benchmarks.experiments import ENGINE_EXPERIMENTS, HTTP_EXPERIMENTS
from benchmarks.experiments.app import BenchApp
from benchmarks.experiments.common import SEED, ExperimentResult, RunContext
from benchmarks.experiments.report import write
from benchmarks.experiments.schema import problems

logger = logging.getLogger("benchmarks.experiments")
AppFactory = Callable[[RunContext, list[tuple[str, int]]], BenchApp]


def topology(ctx: RunContext, names: list[str]) -> list[tuple[str, int]]:
    """The (engine, workers) regions the HTTP experiments among ``names`` need."""
    counts = {1} if {"overhead", "concurrency"} & set(names) else set()
    if "multi_worker" in names:
        counts |= {1, 2}
    return [(engine, n) for engine in ctx.engines for n in sorted(counts)]


def _timed(name: str, call: Callable[[], ExperimentResult], ctx: RunContext) -> ExperimentResult:
    logger.info("experiment %s: started", name)
    started = time.perf_counter()
    result = call()
    result.wall_s = time.perf_counter() - started
    paths = write(result, ctx)
    found = problems(result.as_dict(ctx))
    if found:
        raise RuntimeError(f"{name}: results do not match the schema: {found[:5]}")
    logger.info("experiment %s: %.1f s, wrote %s", name, result.wall_s, paths["json"])
    return result


def run_experiments(ctx: RunContext, names: list[str], start_app: AppFactory) -> list[ExperimentResult]:
    import torch

    torch.manual_seed(SEED)
    results: list[ExperimentResult] = []
    engine_names: list[str] = [n for n in ENGINE_EXPERIMENTS if n in names]
    for name in engine_names:
        module: Any = importlib.import_module(f"benchmarks.experiments.{name}")
        results.append(_timed(name, functools.partial(module.run, ctx), ctx))
    http_names: list[str] = [n for n in HTTP_EXPERIMENTS if n in names]
    if http_names:
        app = start_app(ctx, topology(ctx, http_names))
        try:
            for name in http_names:
                module = importlib.import_module(f"benchmarks.experiments.{name}")
                results.append(_timed(name, functools.partial(module.run, ctx, app), ctx))
        finally:
            app.stop()
    return results
