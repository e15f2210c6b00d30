"""Gateways on a real PostgreSQL: replicas share keys and limits; a database that is down or lost is a clear
failure at start and a 503 while serving, and nothing half-written is left behind."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from securechat.config import AppSettings, RegionSettings
from securechat.db import DatabaseSettings, DatabaseUnavailable
from securechat.dispatcher import InferenceDispatcher
from securechat.gateway.app import create_app
from securechat.gateway.backend import LocalBackend
from securechat.gateway.service import GatewayService
from securechat.keys import WorkerKeys
from securechat.tenants.policy import TenantPolicy
from securechat.tenants.settings import TenantsSettings
from securechat.tenants.tenancy import Tenancy, build_tenancy
from securechat.worker import EnclaveWorker
from tests.fakes import FakePool, ScriptedEngine
from tests.postgres_harness import PostgresServer

BODY = {"tenant_id": "acme", "prompt": "hello", "mode": "plain", "region": "us-west-1"}


def settings_for(url: str, tmp_path: Path, requests_per_minute: int = 10) -> AppSettings:
    return AppSettings(
        regions=(RegionSettings(name="us-west-1"),),
        tenants=TenantsSettings(
            store_path=tmp_path / "unused.sqlite3",
            server_secret_path=tmp_path / "server_secret",  # one file, as every gateway node mounts it
            default_policy=TenantPolicy(
                requests_per_minute=requests_per_minute, max_concurrent_streams=100, max_new_tokens=64
            ),
        ),
        database=DatabaseSettings(url=url, acquire_timeout_s=0.5, connect_timeout_s=2),
    )


def replica(settings: AppSettings) -> tuple[httpx.AsyncClient, Tenancy]:
    """One gateway replica: its own tenancy (its own connections), its own in-process worker."""
    worker = EnclaveWorker("w0", "us-west-1", ScriptedEngine(delay_s=0.01), 8, keys=WorkerKeys.generate())
    asyncio.run(worker.start())
    tenancy = build_tenancy(settings.auth, settings.tenants, settings.database)
    app = create_app()
    backend = LocalBackend(InferenceDispatcher({"us-west-1": FakePool([worker])}))
    app.state.service = GatewayService(settings, backend, tenancy)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test"), tenancy


@pytest.fixture
def two_replicas(postgres_url: str, tmp_path: Path) -> Iterator[list[tuple[httpx.AsyncClient, Tenancy]]]:
    replicas = [replica(settings_for(postgres_url, tmp_path)) for _ in range(2)]
    yield replicas
    for _, tenancy in replicas:
        tenancy.close()


def test_two_gateway_replicas_share_keys_and_admit_exactly_the_rate(
    two_replicas: list[tuple[httpx.AsyncClient, Tenancy]],
) -> None:
    (first, first_tenancy), (second, _) = two_replicas
    assert first_tenancy.store is not None
    key = first_tenancy.store.add_key("acme")  # added through one replica, used through both
    headers = {"Authorization": f"Bearer {key}"}

    async def twenty() -> list[httpx.Response]:
        clients = [first, second] * 10
        return list(await asyncio.gather(*(c.post("/infer", json=BODY, headers=headers) for c in clients)))

    answers = asyncio.run(twenty())
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 10 + [429] * 10
    refused = [a for a in answers if a.status_code == 429]
    assert all(a.json()["error"] == "rate_limited" and "retry-after" in a.headers for a in refused)
    assert first_tenancy.limiter.open_streams("acme") == 0  # every stream's lease was released


def test_a_database_that_is_down_fails_the_gateways_start_with_a_clear_message(tmp_path: Path) -> None:
    server = PostgresServer()  # initialised, not started
    try:
        settings = settings_for(server.url().replace("postgres@", "postgres:hunter2@"), tmp_path)
        with pytest.raises(DatabaseUnavailable) as refused:
            build_tenancy(settings.auth, settings.tenants, settings.database)
        message = str(refused.value)
        assert message.startswith("cannot connect to the database at postgresql://postgres@127.0.0.1:")
        assert "hunter2" not in message
    finally:
        server.close()


def test_a_lost_database_is_503_then_recovers_with_nothing_half_written(tmp_path: Path) -> None:
    server = PostgresServer()
    server.start()
    try:
        settings = settings_for(server.url(), tmp_path, requests_per_minute=100)
        client, tenancy = replica(settings)
        assert tenancy.store is not None
        key = tenancy.store.add_key("acme")
        headers = {"Authorization": f"Bearer {key}"}

        def infer() -> httpx.Response:
            return asyncio.run(client.post("/infer", json=BODY, headers=headers))

        assert infer().status_code == 200
        before = _limit_rows(server.url())
        server.stop()
        lost = infer()
        assert lost.status_code == 503 and lost.headers["retry-after"] == "1"
        assert lost.json() == {
            "error": "database_unavailable",
            "message": "The service's database is unavailable; retry later.",
        }
        alive = asyncio.run(client.get("/healthz"))
        assert alive.status_code == 200  # the event loop never waited on the database
        server.start()
        assert _limit_rows(server.url()) == before  # the failed request left no lease and charged nothing
        statuses = [infer().status_code for _ in range(10)]
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}  # back within the pool's reconnect
        tenancy.close()
    finally:
        server.close()


def _limit_rows(url: str) -> tuple[Any, ...]:
    with psycopg.connect(url) as connection:
        (requests_level,) = connection.execute("SELECT requests_level FROM tenant_limits").fetchone() or (None,)
        (streams,) = connection.execute("SELECT COUNT(*) FROM tenant_streams").fetchone() or (0,)
    return requests_level, streams
