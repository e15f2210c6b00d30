"""One Ray cluster of four nodes on this machine, running configs/cluster.yaml against a real PostgreSQL.

head    host                  Gateway, Orchestrator, DocumentStore (one replica each), the Serve controller
host-2  host, region:us-west-1 Gateway, Orchestrator, DocumentStore, Worker-us-west-1
us-2    region:us-west-1      Worker-us-west-1 (the node lost mid-stream)
eu-1    region:eu-west-1      Worker-eu-west-1

These tests run last in the session (tests/conftest.py), after the single-node app is stopped, and in order.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from securechat.attestation import (
    ensure_root,
)
from securechat.client import SecureChatClient
from securechat.client.collections import DocumentFile
from securechat.client.keyring import Keyring
from securechat.db.postgres import PostgresDatabase
from securechat.engine.base import SamplingParams
from securechat.envelope import seal_request
from securechat.framing import FrameDecoder
from securechat.keys import RecipientKey
from securechat.rag.store import SQLDocumentStore
from securechat.request_body import RequestBody
from securechat.stream import DATA_FRAME, ERROR_FRAME, START_FRAME
from securechat.tenants.policy import PolicyOverride
from securechat.tenants.store import TenantStore
from tests.cluster_harness import (
    LocalCluster,
    cluster_app_config,
    deploy_config,
    free_port,
    node_resources,
    replica_nodes,
    wait_for,
)
from tests.postgres_harness import PostgresServer
from tests.rag_harness import BREAD
from tests.ray_harness import REPO_ROOT, pinned_client_config

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

US, EU = "us-west-1", "eu-west-1"
CHUNKS = [f"{i} " for i in range(24)]  # 24 x 0.25 s: a 6 s answer, long enough to lose a node in the middle
ENGINE = {
    "kind": "tests.fakes:ScriptedEngine",
    "options": {"chunks": CHUNKS, "delay_s": 0.25, "max_concurrent_requests": 8},
}


@dataclass
class ClusterApp:
    cluster: LocalCluster
    base_url: str
    database_url: str
    keys: dict[str, str]  # tenant -> API key
    args: dict[str, Any]  # the deployed application's args
    root_path: Path  # the platform root every worker node shares
    files: Path

    def client(self, tenant: str, region: str) -> SecureChatClient:
        """The SDK as a tenant runs it: a release key, a manifest for what region's workers run, the root."""
        config = pinned_client_config(
            self.files,
            args=self.args,
            region=region,
            release="cluster",
            base_url=self.base_url,
            root_public_key_path=Path(f"{self.root_path}.pub"),
            tenant_id=tenant,
            api_key=self.keys[tenant],
        )
        return SecureChatClient(config, keyring=Keyring(self.files / f"{tenant}-keyring.json"))

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    def ready_workers(self, region: str) -> list[dict[str, Any]]:
        workers = httpx.get(f"{self.base_url}/v1/workers", timeout=10).json()["regions"][region]
        return [w for w in workers if w["state"] == "READY"]


@pytest.fixture(scope="module")
def cluster_app(
    tiny_model_path: Path, securechat_cache_dir: Path, postgres_server: PostgresServer, tmp_path_factory: Any
) -> Iterator[ClusterApp]:
    import ray
    from ray import serve

    from deployments.local import stop_local

    if ray.is_initialized():  # the session's single-node app: one Ray per process
        stop_local()
    files = tmp_path_factory.mktemp("cluster")
    secret, root = files / "api_key_server_secret", files / "platform-root.pem"
    ensure_root(root)  # provisioned once, the same file for every worker node (README)
    database_url = postgres_server.create_database()
    with PostgresDatabase(database_url) as database, TenantStore(database, secret) as store:
        keys = {tenant: store.add_key(tenant) for tenant in ("acme", "beta")}
        store.set_policy("acme", PolicyOverride(requests_per_minute=10, max_concurrent_streams=50))
        store.set_policy("beta", PolicyOverride(requests_per_minute=1000, max_concurrent_streams=50))
    cluster = LocalCluster.start({"host": 1})
    try:
        cluster.add("host-2", {"host": 1, f"region:{US}": 1})
        cluster.add("us-2", {f"region:{US}": 1})
        cluster.add("eu-1", {f"region:{EU}": 1})
        ray.init(address=cluster.address, namespace="serve", log_to_driver=False)
        port = free_port()
        env = {"PYTHONPATH": str(REPO_ROOT), "SECURECHAT_CACHE_DIR": str(securechat_cache_dir)}
        config = cluster_app_config(
            port=port,
            database_url=database_url,
            secret_path=secret,
            root_path=root,
            engine=ENGINE,
            env=env,
            rag_region=EU,
        )
        deploy_config(config)
        app_args = config["applications"][0]["args"]
        app = ClusterApp(cluster, f"http://127.0.0.1:{port}", database_url, keys, app_args, root, files)
        ready = wait_for(lambda: httpx.get(f"{app.base_url}/readyz", timeout=5).status_code == 200, 180, "readyz")
        assert ready
        wait_for(lambda: len(app.ready_workers(US)) == 2, 120, "two us-west-1 workers")
        yield app
    finally:
        if ray.is_initialized():
            serve.shutdown()
            ray.shutdown()
        cluster.shutdown()


def test_each_deployment_lands_only_on_nodes_with_its_resource(cluster_app: ClusterApp) -> None:
    resources = node_resources()
    cluster = cluster_app.cluster
    for region in (US, EU):
        nodes = replica_nodes(f"Worker-{region}").values()
        assert nodes and all(resources[node].get(f"region:{region}", 0) > 0 for node in nodes)
    assert set(replica_nodes(f"Worker-{US}").values()) == {cluster.node_id("host-2"), cluster.node_id("us-2")}
    assert set(replica_nodes(f"Worker-{EU}").values()) == {cluster.node_id("eu-1")}
    for host_side in ("Gateway", "Orchestrator", "DocumentStore"):
        nodes = list(replica_nodes(host_side).values())
        assert sorted(nodes) == sorted({cluster.node_id("head"), cluster.node_id("host-2")}), host_side


def test_gateways_on_two_nodes_share_keys_and_admit_exactly_the_tenants_rate(cluster_app: ClusterApp) -> None:
    """The key and the 10/min policy were written to PostgreSQL from this process; two gateway replicas on two
    nodes check them, and 20 requests at once get exactly 10 answers, each decrypted at the edge to its end."""
    body = {"tenant_id": "acme", "prompt": "hi", "mode": "plain", "region": EU, "max_new_tokens": 8}
    headers = {**cluster_app.headers("acme"), "Accept": "text/event-stream"}
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        response = httpx.post(f"{cluster_app.base_url}/infer", json=body, headers=headers, timeout=60)
        with lock:
            results.append(response)

    before = cluster_app.cluster.http_requests_by_replica("Gateway", "POST /infer")
    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    served = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code == 429]
    assert len(served) == 10 and len(refused) == 10, [(r.status_code, r.text[:200]) for r in results]
    assert all("event: done" in r.text and "".join(CHUNKS).strip() in _sse_text(r.text) for r in served)
    assert all(r.json()["error"] == "rate_limited" for r in refused)
    unknown = httpx.post(f"{cluster_app.base_url}/infer", json=body, headers={"Authorization": "Bearer sc_x"})
    assert unknown.status_code == 401
    # Both gateway replicas (one per node) took part: the limit held across them, not inside one.
    gateways = replica_nodes("Gateway")
    after = _wait_for_logged(cluster_app, "POST /infer", sum(before.values()) + 21)
    handled = {replica: after.get(replica, 0) - before.get(replica, 0) for replica in gateways}
    assert len(gateways) == 2 and all(count > 0 for count in handled.values()), handled


def test_collections_are_one_store_from_every_node(cluster_app: ClusterApp) -> None:
    url, headers = cluster_app.base_url, cluster_app.headers("beta")
    created = httpx.post(f"{url}/v1/collections", json={"tenant_id": "beta"}, headers=headers, timeout=30)
    assert created.status_code == 201
    collection_id = created.json()["collection_id"]
    before = cluster_app.cluster.http_requests_by_replica("Gateway", "GET /v1/collections")

    def list_collections() -> list[str]:
        listed = httpx.get(f"{url}/v1/collections", params={"tenant_id": "beta"}, headers=headers, timeout=30)
        return [c["collection_id"] for c in listed.json()["collections"]]

    with ThreadPoolExecutor(4) as pool:  # concurrent, so the proxy spreads them over both gateways
        assert list(pool.map(lambda _: list_collections(), range(12))) == [[collection_id]] * 12
    after = _wait_for_logged(cluster_app, "GET /v1/collections", sum(before.values()) + 12)
    assert all(after.get(replica, 0) > before.get(replica, 0) for replica in replica_nodes("Gateway")), after
    direct = SQLDocumentStore(PostgresDatabase(cluster_app.database_url))
    assert [c.collection_id for c in direct.list_collections("beta")] == [collection_id]  # in PostgreSQL
    direct.close()
    deleted = httpx.delete(f"{url}/v1/collections/{collection_id}", params={"tenant_id": "beta"}, headers=headers)
    assert deleted.status_code == 200


def test_a_worker_on_a_node_without_a_store_replica_ingests_and_answers_from_postgresql(
    cluster_app: ClusterApp,
) -> None:
    """eu-west-1's only worker runs on eu-1, where no DocumentStore replica runs: it reaches a store replica on
    another node, which keeps only sealed blobs in PostgreSQL."""
    with cluster_app.client("beta", EU) as client:
        cid = client.collections.create("cluster").collection_id
        written = client.collections.add(cid, [DocumentFile.checked("bread.md", BREAD, "text/markdown")])
        hits = client.collections.search(cid, "How long must dough rise?", top_k=1)
        completion = client.complete("How long must dough rise?", collection=cid, top_k=1, max_new_tokens=8)
        assert hits[0].doc_id == written[0]["doc_id"] == completion.citations[0]["doc_id"]
        with PostgresDatabase(cluster_app.database_url) as database, database.transaction(write=False) as tx:
            rows = tx.execute("SELECT sealed_text, sealed_embedding FROM chunks").rows
        blobs = [bytes(blob) for row in rows for blob in row]
        assert blobs and not any(b"Knead" in blob or b"dough" in blob for blob in blobs)
        client.collections.delete(cid)


def test_a_node_lost_mid_stream_ends_its_streams_at_once_and_capacity_comes_back(cluster_app: ClusterApp) -> None:
    cluster, url = cluster_app.cluster, cluster_app.base_url
    on_node = {replica: node for replica, node in replica_nodes(f"Worker-{US}").items()}
    directory = httpx.get(f"{url}/v1/keys", params={"region": US}, timeout=10).json()["workers"]
    victim = next(w for w in directory if on_node.get(w["worker_id"].rsplit("-", 1)[1]) == cluster.node_id("us-2"))
    sealed = seal_request(
        RequestBody.from_prompt("x", SamplingParams(max_new_tokens=64)).to_bytes(),
        request_id=uuid.uuid4().hex,
        tenant_id="beta",
        mode="plain",
        region=US,
        recipients=[RecipientKey.from_dict(key) for key in victim["keys"]],  # only the worker on us-2 opens it
    )
    payload = {"tenant_id": "beta", "mode": "plain", "region": US, "envelope": sealed.envelope.to_dict()}
    frames: list[bytes] = []
    killer: threading.Thread | None = None
    lost_at = ended_at = 0.0
    auth = cluster_app.headers("beta")
    with httpx.Client(timeout=60) as client, client.stream("POST", f"{url}/infer", json=payload, headers=auth) as r:
        assert r.status_code == 200
        decoder = FrameDecoder()
        for chunk in r.iter_bytes():
            frames += decoder.feed(chunk)
            ended_at = time.monotonic()
            if killer is None and any(frame[0] == DATA_FRAME for frame in frames):
                lost_at = time.monotonic()
                killer = threading.Thread(target=cluster.lose, args=("us-2",))
                killer.start()
    assert killer is not None
    killer.join()
    assert frames[0][0] == START_FRAME and frames[-1][0] == ERROR_FRAME
    assert json.loads(frames[-1][1:])["code"] == "worker_lost"
    assert ended_at - lost_at < 3.0  # at once: the answer had ~5.5 s left to run

    # New requests are served by the surviving us-west-1 worker, and the region stays ready.
    body = {"tenant_id": "beta", "prompt": "hi", "mode": "plain", "region": US}
    headers = {**cluster_app.headers("beta"), "Accept": "text/event-stream"}

    def served() -> bool:
        response = httpx.post(f"{url}/infer", json=body, headers=headers, timeout=30)
        return response.status_code == 200 and "event: done" in response.text

    assert wait_for(served, 60, "a request served by the surviving node")
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200

    # Capacity returns: a new node with the region's resource gets the replica Serve could not place.
    cluster.add("us-3", {f"region:{US}": 1})
    wait_for(lambda: len(cluster_app.ready_workers(US)) == 2, 120, "us-west-1 back to two workers")
    assert set(replica_nodes(f"Worker-{US}").values()) == {cluster.node_id("host-2"), cluster.node_id("us-3")}


def _wait_for_logged(cluster_app: ClusterApp, route: str, total: int) -> dict[str, int]:
    """The access-log counts once ``total`` requests are logged (a replica writes its line as it answers)."""

    def logged() -> dict[str, int] | None:
        counts = cluster_app.cluster.http_requests_by_replica("Gateway", route)
        return counts if sum(counts.values()) >= total else None

    counts: dict[str, int] = wait_for(logged, 20, f"{total} {route} in the gateways' logs")
    return counts


def _sse_text(body: str) -> str:
    return "".join(
        json.loads(line.removeprefix("data: ")).get("text", "")
        for line in body.splitlines()
        if line.startswith("data: ")
    )
