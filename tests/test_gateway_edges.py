"""The gateway's edges: readiness, the anonymous routes that reach every worker, and the body size limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from securechat.config import AppSettings, GatewaySettings, RegionSettings
from securechat.gateway.app import create_app
from securechat.gateway.service import GatewayService
from securechat.host_limits import HostLimits
from securechat.tenants.auth import AuthMode, AuthSettings
from securechat.tenants.tenancy import build_tenancy

REGIONS = ("us-west-1", "eu-west-1")


class StubBackend:
    """An orchestrator whose workers' states the test sets, and which counts what reaches the workers."""

    def __init__(self) -> None:
        self.states: dict[str, list[str]] = {region: [] for region in REGIONS}
        self.describes = 0
        self.attestations_sent = 0

    def infer(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        raise AssertionError("no request is dispatched in these tests")

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        self.describes += 1
        await asyncio.sleep(0.01)  # a broadcast takes a while: concurrent callers overlap
        return [
            {"worker_id": f"{region}-{i}", "region": region, "state": state, "keys": []}
            for i, state in enumerate(self.states[region])
        ]

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        self.attestations_sent += 1
        await asyncio.sleep(0.01)
        return [{"worker_id": f"{region}-0", "attestation": {"nonce": nonce}}]


def gateway(backend: StubBackend, **gateway_settings: Any) -> httpx.AsyncClient:
    settings = AppSettings(
        regions=tuple(RegionSettings(name=r) for r in REGIONS),
        gateway=GatewaySettings(key_directory_ttl_s=0.2, **gateway_settings),
    )
    tenancy = build_tenancy(AuthSettings(mode=AuthMode.DISABLED), settings.tenants)
    app = create_app()
    app.state.service = GatewayService(settings, backend, tenancy)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_readyz_names_the_regions_without_a_ready_worker_until_every_region_has_one() -> None:
    backend = StubBackend()
    client = gateway(backend)

    async def scenario() -> list[httpx.Response]:
        answers = [await client.get("/readyz"), await client.get("/healthz")]
        backend.states["us-west-1"] = ["MODEL_LOADING", "READY"]
        backend.states["eu-west-1"] = ["MODEL_LOADING"]
        await asyncio.sleep(0.25)  # past the directory's cache
        answers.append(await client.get("/readyz"))
        backend.states["eu-west-1"] = ["STREAMING"]  # busy past READY: it takes (queues) requests
        await asyncio.sleep(0.25)
        answers.append(await client.get("/readyz"))
        return answers

    starting, alive, one_region, ready = asyncio.run(scenario())
    assert alive.status_code == 200  # liveness says nothing about workers
    assert starting.status_code == 503 and starting.headers["retry-after"] == "1"
    assert starting.json() == {"status": "not_ready", "regions_without_ready_worker": list(REGIONS)}
    assert one_region.status_code == 503 and one_region.json()["regions_without_ready_worker"] == ["eu-west-1"]
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_a_flood_on_the_anonymous_directory_routes_makes_one_broadcast_per_region() -> None:
    backend = StubBackend()
    backend.states["us-west-1"] = ["READY"]
    client = gateway(backend)

    async def flood() -> list[int]:
        routes = ["/readyz", "/v1/workers", "/v1/keys?region=us-west-1"] * 30
        return [r.status_code for r in await asyncio.gather(*(client.get(route) for route in routes))]

    statuses = asyncio.run(flood())
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 30
    assert backend.describes == len(REGIONS)  # 90 anonymous calls, one description of each region


def test_attestation_is_rate_limited_per_gateway_and_a_repeated_nonce_is_cached() -> None:
    backend = StubBackend()
    client = gateway(backend, attestations_per_minute=5)

    async def flood() -> list[httpx.Response]:
        nonces = [f"{i:032x}" for i in range(40)]
        return list(await asyncio.gather(*(client.get("/v1/attestation", params={"nonce": n}) for n in nonces)))

    answers = asyncio.run(flood())
    served = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 429]
    assert len(served) == 5 and len(refused) == 35
    assert backend.attestations_sent == 5 * len(REGIONS)  # what reached the workers: 5 broadcasts per region
    assert all(a.json()["error"] == "rate_limited" and int(a.headers["retry-after"]) >= 1 for a in refused)
    again = asyncio.run(client.get("/v1/attestation", params={"nonce": served[0].json()["nonce"]}))
    assert again.status_code == 200 and backend.attestations_sent == 5 * len(REGIONS)  # a retry costs nothing


def test_a_chunked_body_is_refused_once_it_passes_the_limit_without_being_read_whole() -> None:
    client = gateway(StubBackend(), max_envelope_bytes=4096)
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 100:  # 100 KiB if it were all read; the limit is 4 KiB
            sent += 1
            yield b" " * 1024

    async def post() -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        return await client.post("/infer", content=endless(), headers=headers)

    response = asyncio.run(post())
    assert response.status_code == 413 and response.json() == {
        "error": "payload_too_large",
        "message": "The request body is over the configured limit.",
        "limit": 4096,
    }
    assert sent <= 6  # refused at the fifth KiB, not after reading all 100


@pytest.mark.parametrize("size", [4096, 4097])
def test_the_limit_is_exact_for_chunked_bodies(size: int) -> None:
    client = gateway(StubBackend(), max_envelope_bytes=4096)

    async def body() -> AsyncIterator[bytes]:
        yield b" " * (size - 2)
        yield b"{}"

    response = asyncio.run(client.post("/infer", content=body(), headers={"Content-Type": "application/json"}))
    assert response.status_code == (422 if size == 4096 else 413)  # at the limit: read, then found invalid
