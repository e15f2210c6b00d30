"""Run the whole app on a local Ray cluster on free ports: for tests, benchmarks and load tests.

Production uses ``serve run``/``serve deploy`` with a config file; this exists so code can start, drive and
stop a real deployment (two Serve instances on one host would silently share port 8000, so ports are free ones).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deployments.serve_env import BUILDER_ENV, THROUGHPUT_ENV

APP_NAME = "securechat"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalApp:
    base_url: str
    metrics_url: str
    session_dir: Path

    def workers(self, region: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.base_url}/v1/workers", timeout=10).json()
        workers: list[dict[str, Any]] = body["regions"][region]
        return workers

    def wait_ready(self, region: str, count: int, timeout_s: float = 120, exact: bool = False) -> list[dict[str, Any]]:
        """Poll until ``region`` has ``count`` READY workers (exactly that many live ones if ``exact``)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                workers = self.workers(region)
                ready = sum(w["state"] == "READY" for w in workers)
                if ready >= count and (not exact or len(workers) == count):
                    return workers
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{region} did not get {count} READY workers")


def start_local(
    args: dict[str, Any], *, env: dict[str, str] | None = None, num_cpus: int = 4, extra_pythonpath: str | None = None
) -> LocalApp:
    """Start Ray + Serve on free ports and deploy ``build_app(args)``; returns once every region is READY.

    Ray runs with Serve's throughput switches, as ``make serve`` runs it (deployments/serve_env.py): Serve's
    processes take them from this job's runtime_env; this process builds the app, so the handles it builds take
    their gRPC default from its own environment (``BUILDER_ENV``, set before it imported Serve).
    """
    require_throughput_env()
    import ray
    from ray import serve

    from securechat.config import AppSettings

    port, metrics_port = free_port(), free_port()
    env_vars = {"HF_HUB_OFFLINE": "1", **THROUGHPUT_ENV, **(env or {})}  # every process of this job: all four
    if extra_pythonpath:
        env_vars["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_pythonpath, os.environ.get("PYTHONPATH")]))
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
        log_to_driver=False,
        runtime_env={"env_vars": env_vars},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy(args)
    node = ray._private.worker._global_node  # no public accessor for the session dir (logs live under it)
    assert node is not None
    session_dir = Path(node.get_session_dir_path())
    app = LocalApp(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", session_dir)
    for region in AppSettings.model_validate(args).regions:
        app.wait_ready(region.name, region.num_replicas)
    return app


def require_throughput_env() -> None:
    """Serve reads its switches when it is imported: set them first, or refuse to build a half-switched app."""
    os.environ.update(BUILDER_ENV)
    import ray.serve._private.constants as serve_constants  # the values this process's Serve took at import

    if not serve_constants.RAY_SERVE_USE_GRPC_BY_DEFAULT:
        raise RuntimeError(
            "ray.serve was imported before deployments.serve_env.BUILDER_ENV was in the environment: set it first"
            " (tests/conftest.py does)"
        )


def deploy(args: dict[str, Any]) -> None:
    """(Re)deploy the app; a change of num_replicas alone scales in place, keeping the other replicas."""
    from ray import serve

    from deployments.app import build_app

    serve.run(build_app(args), name=APP_NAME, route_prefix="/", blocking=False)


def stop_local() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()
