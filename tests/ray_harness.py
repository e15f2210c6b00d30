"""One local Ray cluster + Serve app per test session, on free ports (two Serve instances would share 8000)."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
MAIN_REGION = "us-west-1"
BATCHED_REGION = "batched-1"  # the continuous-batching engine behind the same graph
FAULT_REGION = "faults-1"  # scripted slow engine: lets tests kill a replica before or during its stream
FAULT_CHUNKS = ["one ", "two ", "three ", "four"]
FAULT_DELAY_S = 0.8

APP_ARGS: dict[str, Any] = {
    "regions": [
        {"name": MAIN_REGION, "num_replicas": 2},
        {
            "name": BATCHED_REGION,
            "num_replicas": 1,
            "engine": {"kind": "batched", "dtype": "fp32", "device": "cpu", "max_new_tokens": 32, "max_batch_size": 8},
        },
        {
            "name": FAULT_REGION,
            "num_replicas": 2,
            "engine": {
                "kind": "tests.fakes:ScriptedEngine",
                "options": {"chunks": FAULT_CHUNKS, "delay_s": FAULT_DELAY_S},
            },
        },
    ],
    "engine": {"kind": "hf", "model": "securechat/tiny-qwen2", "dtype": "fp32", "device": "cpu", "max_new_tokens": 32},
    "gateway": {"max_prompt_chars": 2000, "key_directory_ttl_s": 0.5},
    "dispatch": {"choose_timeout_s": 20},
    "auth": {"mode": "disabled"},  # tenant auth is tested in-process (test_gateway_auth.py)
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RayApp:
    base_url: str
    metrics_url: str
    session_dir: Path

    def workers(self, region: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.base_url}/v1/workers", timeout=10).json()
        workers: list[dict[str, Any]] = body["regions"][region]
        return workers

    def wait_ready(self, region: str, count: int, timeout_s: float = 90) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                workers = self.workers(region)
                if sum(w["state"] == "READY" for w in workers) >= count:
                    return workers
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{region} did not get {count} READY workers")


def start(cache_dir: Path) -> RayApp:
    import ray
    from ray import serve

    from deployments.app import build_app

    port, metrics_port = free_port(), free_port()
    env = {
        "HF_HUB_OFFLINE": "1",
        "SECURECHAT_CACHE_DIR": str(cache_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        _metrics_export_port=metrics_port,
        _system_config={"metrics_report_interval_ms": 1000},
        log_to_driver=False,
        runtime_env={"env_vars": env},
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(APP_ARGS), name="securechat", route_prefix="/", blocking=False)
    session_dir = Path(ray._private.worker._global_node.get_session_dir_path())
    app = RayApp(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", session_dir)
    app.wait_ready(MAIN_REGION, 2)
    app.wait_ready(BATCHED_REGION, 1)
    app.wait_ready(FAULT_REGION, 2)
    return app


def stop() -> None:
    import ray
    from ray import serve

    serve.shutdown()
    ray.shutdown()


def kill_worker(worker_id: str) -> None:
    """Kill the replica actor behind ``worker_id`` (``<region>-<replica unique id>``), as a crash would."""
    import ray

    unique_id = worker_id.rsplit("-", 1)[1]
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::") and actor["name"].endswith(f"#{unique_id}"):
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            return
    raise LookupError("no replica actor for that worker")
