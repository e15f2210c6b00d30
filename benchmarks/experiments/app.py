"""The Serve app the end-to-end experiments drive: one region per (engine, number of workers).

Regions are named ``<engine>-<n>w`` (``hf-1w``, ``batched-2w``, ...), so one deployment serves every
configuration and each request names exactly the workers it measures. ``start`` runs the app on its own local
Ray (``deployments.local``); ``attach`` adds it as a second Serve application, under ``/bench``, to a Ray that
is already running (the test suite's), and ``stop`` removes only what was started.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from benchmarks.experiments.common import RunContext
from benchmarks.experiments.engines import engine_settings

ATTACHED_APP_NAME: Final = "securechat-bench"
ATTACHED_PREFIX: Final = "/bench"
MAX_INPUT_TOKENS: Final = 1024


def region_name(engine: str, num_workers: int) -> str:
    return f"{engine}-{num_workers}w"


def app_args(ctx: RunContext, topology: list[tuple[str, int]]) -> dict[str, Any]:
    sizes = ctx.sizes
    max_new_tokens = max(sizes.http_max_new_tokens, sizes.overhead_max_new_tokens)
    batch = max(*sizes.overhead_streams, *sizes.concurrency_levels, sizes.multi_worker_requests)
    regions = []
    for engine, num_workers in topology:
        settings = engine_settings(ctx, engine, max_new_tokens, max_input_tokens=MAX_INPUT_TOKENS)
        if engine == "batched":
            kv_tokens = batch * (MAX_INPUT_TOKENS + max_new_tokens)
            settings = settings.model_copy(update={"max_batch_size": batch, "kv_cache_tokens": kv_tokens})
        engine_args = settings.model_dump(mode="json", exclude={"options"})
        regions.append({"name": region_name(engine, num_workers), "num_replicas": num_workers, "engine": engine_args})
    unlimited = {"max_concurrent_streams": 1024, "requests_per_minute": 1_000_000, "tokens_per_minute": 10**9}
    return {
        "regions": regions,
        "engine": regions[0]["engine"],
        "dispatch": {"choose_timeout_s": 900, "max_in_flight": 4096},
        "auth": {"mode": "disabled"},
        "tenants": {"default_policy": unlimited},
    }


@dataclass
class BenchApp:
    base_url: str
    regions: list[str]
    attached: bool

    def region(self, engine: str, num_workers: int) -> str | None:
        name = region_name(engine, num_workers)
        return name if name in self.regions else None

    def stop(self) -> None:
        from ray import serve

        if self.attached:
            serve.delete(ATTACHED_APP_NAME)
        else:
            from deployments.local import stop_local

            stop_local()


def _wait_ready(base_url: str, args: dict[str, Any]) -> None:
    from deployments.local import LocalApp

    probe = LocalApp(base_url, metrics_url="", session_dir=None)  # type: ignore[arg-type]
    for region in args["regions"]:
        probe.wait_ready(region["name"], region["num_replicas"], timeout_s=600)


def start(ctx: RunContext, topology: list[tuple[str, int]], env: dict[str, str] | None = None) -> BenchApp:
    from deployments.local import start_local

    args = app_args(ctx, topology)
    local = start_local(args, env=env)
    return BenchApp(local.base_url, [r["name"] for r in args["regions"]], attached=False)


def attach(ctx: RunContext, topology: list[tuple[str, int]], http_base_url: str) -> BenchApp:
    """Deploy beside the apps of an already running Serve; ``http_base_url`` is its HTTP proxy's root."""
    from ray import serve

    from deployments.app import build_app

    args = app_args(ctx, topology)
    serve.run(build_app(args), name=ATTACHED_APP_NAME, route_prefix=ATTACHED_PREFIX, blocking=False)
    base_url = http_base_url.rstrip("/") + ATTACHED_PREFIX
    _wait_ready(base_url, args)
    return BenchApp(base_url, [r["name"] for r in args["regions"]], attached=True)
