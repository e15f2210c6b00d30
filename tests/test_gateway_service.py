"""What the gateway charges a tenant for a stream that ended without its final frame (a lost worker): the
frames prove a lower bound only when no tick can have been padding."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from securechat.config import AppSettings, RegionSettings, StreamSettings
from securechat.gateway.service import AcceptedStream, GatewayService
from securechat.tenants.auth import AuthMode, AuthSettings
from securechat.tenants.tenancy import build_tenancy


class NoOrchestrator:
    """Nothing reaches an orchestrator here: the stream is handed to ``finish`` as it was when it broke."""

    def infer(self, envelope: bytes, limits: object = None) -> AsyncIterator[bytes]:
        raise AssertionError("not dispatched")

    async def key_directory(self, region: str) -> list[dict[str, object]]:
        raise AssertionError("not described")

    async def attestations(self, region: str, nonce: str) -> list[dict[str, object]]:
        raise AssertionError("not attested")


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


@pytest.mark.parametrize(("constant_rate", "charged"), [(False, 9), (True, 0)])
def test_a_stream_lost_before_its_final_frame_is_charged_what_its_frames_prove(
    constant_rate: bool, charged: int
) -> None:
    settings = AppSettings(
        regions=(RegionSettings(name="us-west-1"), RegionSettings(name="eu-west-1")),
        stream=StreamSettings(constant_rate=constant_rate),
    )
    tenancy = build_tenancy(AuthSettings(mode=AuthMode.DISABLED), settings.tenants)
    service = GatewayService(settings, NoOrchestrator(), tenancy)  # type: ignore[arg-type]
    lease = tenancy.limiter.admit("acme", settings.tenants.default_policy, 1)
    accepted = AcceptedStream("r1", b"", _nothing(), None, time.perf_counter(), lease)
    accepted.frames = 10  # the start frame and nine data frames, then the worker was lost

    asyncio.run(service.finish(accepted))
    assert lease.released and lease.output_tokens == charged
