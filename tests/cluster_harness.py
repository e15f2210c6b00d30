"""A real multi-node Ray cluster on this machine (one raylet per node, each with its own resources), and
configs/cluster.yaml deployed on it the way ``serve run``/``serve deploy`` deploy a config file.

``ray.cluster_utils.Cluster`` starts a head and worker nodes as separate raylets; a node is lost the way a
machine is (every process of it killed) with ``lose``. Placement is read from the GCS actor table: which node
each Serve replica runs on. The test's copy of the config swaps only what a test must: the engine (a scripted
one, fast on 2 cores), the ports, the database URL, the key paths, and the proxy location (all nodes here
share one address and port, so one proxy, on the head, stands in for the load balancer). That proxy is told
not to prefer replicas on its own node (``PROXY_ENV``), as a load balancer spreading requests over every node's
proxy would: otherwise every request would reach the head's gateway and the other node's would never be tried.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from deployments.local import APP_NAME, free_port
from deployments.serve_env import THROUGHPUT_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_CONFIG = REPO_ROOT / "configs" / "cluster.yaml"
# Fast failure detection: a lost node is declared dead after ~2 missed health checks, not Ray's default ~30 s.
SYSTEM_CONFIG = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 2,
    "metrics_report_interval_ms": 1000,
}

# Read by Serve's proxy actor, which inherits the raylet's environment (so it is set before the nodes start).
PROXY_ENV = {"RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"}


@dataclass
class LocalCluster:
    """Head plus named worker nodes; ``address`` for ``ray.init``."""

    cluster: Any
    nodes: dict[str, Any] = field(default_factory=dict)  # name -> ray._private.node.Node

    @classmethod
    def start(cls, head_resources: dict[str, float]) -> LocalCluster:
        from ray.cluster_utils import Cluster

        head = {"num_cpus": 2, "resources": head_resources, "include_dashboard": False, "_system_config": SYSTEM_CONFIG}
        os.environ.update(PROXY_ENV | THROUGHPUT_ENV)  # the nodes' processes, as `ray start` gets them
        started = cls(Cluster(initialize_head=True, head_node_args=head))
        started.nodes["head"] = started.cluster.head_node
        return started

    @property
    def address(self) -> str:
        address: str = self.cluster.address
        return address

    def add(self, name: str, resources: dict[str, float]) -> str:
        node = self.cluster.add_node(num_cpus=2, resources=resources)
        self.nodes[name] = node
        node_id: str = node.node_id
        return node_id

    def lose(self, name: str) -> None:
        """Every process of the node killed at once, as when its machine fails."""
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def node_id(self, name: str) -> str:
        node_id: str = self.nodes[name].node_id
        return node_id

    def shutdown(self) -> None:
        self.cluster.shutdown()
        for name in PROXY_ENV:
            os.environ.pop(name, None)

    def http_requests_by_replica(self, deployment: str, route: str) -> dict[str, int]:
        """Replica id -> how many ``route`` requests (e.g. ``POST /infer``) its access log records.

        Every node of this cluster writes its logs under the one session directory; Serve logs each HTTP
        request a replica handled as ``... <replica id> <request id> -- POST /infer 200 12.3ms``.
        """
        session = Path(self.cluster.head_node.get_session_dir_path())
        pattern = re.compile(rf" -- {re.escape(route)} \d{{3}} ")
        counts: dict[str, int] = {}
        for log in (session / "logs" / "serve").glob(f"replica_{APP_NAME}_{deployment}_*.log"):
            replica = log.stem.rsplit("_", 1)[1]
            counts[replica] = sum(1 for line in log.read_text(errors="replace").splitlines() if pattern.search(line))
        return counts


def node_resources() -> dict[str, dict[str, float]]:
    """Each live node's id and its resources (custom ones included), from the GCS."""
    import ray

    return {node["NodeID"]: node["Resources"] for node in ray.nodes() if node["Alive"]}


def replica_nodes(deployment: str) -> dict[str, str]:
    """Replica id -> node id for every live replica of ``deployment`` (the worker id's suffix is the replica id)."""
    from ray._private import state  # the GCS actor table: no dashboard needed

    prefix = f"SERVE_REPLICA::{APP_NAME}#{deployment}#"
    return {
        actor["Name"].removeprefix(prefix): actor["Address"]["NodeID"]
        for actor in state.actors(actor_state_name="ALIVE").values()
        if actor["Name"].startswith(prefix)
    }


def cluster_app_config(
    *,
    port: int,
    database_url: str,
    secret_path: Path,
    root_path: Path,
    engine: dict[str, Any],
    env: dict[str, str],
    rag_region: str,
) -> dict[str, Any]:
    """configs/cluster.yaml with the test's engine, port, database, key paths and a head-only proxy."""
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(CLUSTER_CONFIG.read_text()))
    config["proxy_location"] = "HeadOnly"
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    app = config["applications"][0]
    app["runtime_env"]["env_vars"].update(env)
    args = app["args"]
    args["engine"] = engine
    args["database"] = {"url": database_url}
    args["tenants"]["server_secret_path"] = str(secret_path)
    args["attestation"]["root_key_path"] = str(root_path)
    # Only eu-west-1's worker (on a node with no store replica) loads the embedder: collections cross nodes.
    args["rag"]["regions"] = [rag_region]
    return config


def deploy_config(config: dict[str, Any]) -> None:
    """What ``serve run CONFIG`` does with a config file: start Serve with its HTTP options, deploy its apps."""
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location)
    client.deploy_apps(schema, _blocking=False)


def wait_for(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (httpx.HTTPError, KeyError, ValueError):
            value = None
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(what)


def iter_chunks(response: httpx.Response) -> Iterator[tuple[float, bytes]]:
    """The body's chunks as they arrive, each with its arrival time (time.monotonic())."""
    for chunk in response.iter_bytes():
        yield time.monotonic(), chunk


__all__ = [
    "CLUSTER_CONFIG",
    "LocalCluster",
    "cluster_app_config",
    "deploy_config",
    "free_port",
    "iter_chunks",
    "node_resources",
    "replica_nodes",
    "wait_for",
]
