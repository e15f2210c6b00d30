"""Tenant authentication and per-tenant limits over HTTP (in-process gateway, real SQLite tenant store)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from securechat.config import AppSettings, RegionSettings
from securechat.dispatcher import InferenceDispatcher
from securechat.gateway.app import create_app
from securechat.gateway.backend import LocalBackend
from securechat.gateway.service import GatewayService
from securechat.keys import WorkerKeys
from securechat.tenants.auth import AuthSettings
from securechat.tenants.policy import PolicyOverride, TenantPolicy
from securechat.tenants.settings import TenantsSettings
from securechat.tenants.tenancy import Tenancy, build_tenancy
from securechat.worker import EnclaveWorker
from tests.fakes import FakePool, ScriptedEngine

BODY = {"tenant_id": "acme", "prompt": "hello", "mode": "plain", "region": "us-west-1"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[httpx.AsyncClient, Tenancy]]:
    workers = [EnclaveWorker("w0", "us-west-1", ScriptedEngine(delay_s=0.05), 8, keys=WorkerKeys.generate())]
    asyncio.run(workers[0].start())
    tenants = TenantsSettings(
        store_path=tmp_path / "tenants.sqlite3",
        server_secret_path=tmp_path / "server_secret",
        default_policy=TenantPolicy(requests_per_minute=3, max_concurrent_streams=1, max_new_tokens=64),
        policies={"limited": PolicyOverride(allowed_regions=("us-west-1",), requests_per_minute=100)},
    )
    settings = AppSettings(
        regions=(RegionSettings(name="us-west-1"), RegionSettings(name="eu-west-1")),
        auth=AuthSettings(),  # required: the default
        tenants=tenants,
    )
    tenancy = build_tenancy(settings.auth, settings.tenants)
    app = create_app()
    dispatcher = InferenceDispatcher({"us-west-1": FakePool(workers), "eu-west-1": FakePool([])})
    app.state.service = GatewayService(settings, LocalBackend(dispatcher), tenancy)
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test"), tenancy
    tenancy.close()


def post(client: httpx.AsyncClient, body: dict[str, Any], key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return asyncio.run(client.post("/infer", json=body, headers=headers))


def test_auth_is_required_by_default() -> None:
    assert AppSettings().auth.mode.value == "required"


def test_valid_key_for_its_tenant_is_served(gateway: Any) -> None:
    client, tenancy = gateway
    key = tenancy.store.add_key("acme")
    assert post(client, BODY, key).status_code == 200


@pytest.mark.parametrize("presented", [None, "sc_0000000000000000_" + "0" * 64, "not-a-key", "Basic abc"])
def test_missing_or_invalid_keys_are_401(gateway: Any, presented: str | None) -> None:
    client, tenancy = gateway
    tenancy.store.add_key("acme")
    response = post(client, BODY, presented)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_401_comes_before_any_input_checks(gateway: Any) -> None:
    client, _ = gateway
    response = asyncio.run(client.post("/infer", content=b"{not json", headers={"Content-Type": "text/plain"}))
    assert response.status_code == 401


def test_revoked_key_is_401(gateway: Any) -> None:
    client, tenancy = gateway
    key = tenancy.store.add_key("acme")
    key_id = tenancy.store.list_keys("acme")[0].key_id
    assert post(client, BODY, key).status_code == 200
    tenancy.store.revoke(key_id)
    assert post(client, BODY, key).status_code == 401


def test_another_tenants_id_is_403(gateway: Any) -> None:
    client, tenancy = gateway
    key = tenancy.store.add_key("other")
    response = post(client, BODY, key)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


def test_rate_limit_is_429_with_retry_after(gateway: Any) -> None:
    client, tenancy = gateway
    key = tenancy.store.add_key("acme")
    statuses = [post(client, BODY, key) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[-1].json()["error"] == "rate_limited" and int(statuses[-1].headers["retry-after"]) >= 1


def test_concurrent_streams_are_limited_and_released(gateway: Any) -> None:
    client, tenancy = gateway
    key = tenancy.store.add_key("limited")
    body = {**BODY, "tenant_id": "limited"}

    async def two_at_once() -> list[int]:
        headers = {"Authorization": f"Bearer {key}"}
        responses = await asyncio.gather(*(client.post("/infer", json=body, headers=headers) for _ in range(2)))
        return sorted(r.status_code for r in responses)

    assert asyncio.run(two_at_once()) == [200, 429]
    assert tenancy.limiter.open_streams("limited") == 0  # every lease was released
    assert post(client, body, key).status_code == 200


def test_policy_refusals(gateway: Any) -> None:
    client, tenancy = gateway
    key = tenancy.store.add_key("limited")
    region = post(client, {**BODY, "tenant_id": "limited", "region": "eu-west-1"}, key)
    assert region.status_code == 403 and region.json()["error"] == "region_not_allowed"
    too_many = post(client, {**BODY, "tenant_id": "limited", "max_new_tokens": 65}, key)
    assert too_many.status_code == 400 and too_many.json()["error"] == "max_new_tokens_exceeded"


def test_no_key_or_secret_reaches_a_log(gateway: Any, caplog: pytest.LogCaptureFixture) -> None:
    client, tenancy = gateway
    with caplog.at_level(logging.DEBUG):
        key = tenancy.store.add_key("acme")
        post(client, BODY, key)
        post(client, BODY, key + "x")
        post(client, {**BODY, "tenant_id": "other"}, key)
    secret = key.rsplit("_", 1)[1]
    assert secret not in caplog.text and key not in caplog.text
