"""The gateway's worker directory: cached per region, but a cached "no serving worker" is checked again soon,
so a worker that has just become READY is not refused for the whole cache lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from securechat.gateway.key_directory import EMPTY_RECHECK_S, KeyDirectory
from securechat.host_limits import HostLimits
from securechat.keys import Suite, WorkerKeys

KEY = WorkerKeys.generate((Suite.HPKE_X25519,)).public_key(Suite.HPKE_X25519)


class Orchestrator:
    """Describes one region whose single worker's state the test sets; counts the descriptions."""

    def __init__(self) -> None:
        self.state = "MODEL_LOADING"
        self.describes = 0

    def infer(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        raise AssertionError("nothing is dispatched here")

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        self.describes += 1
        return [{"worker_id": "w0", "region": region, "state": self.state, "keys": [KEY.to_dict()]}]

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        raise AssertionError("not used")


def test_an_empty_region_is_described_again_soon_and_a_serving_one_is_cached() -> None:
    orchestrator = Orchestrator()
    directory = KeyDirectory(orchestrator, ttl_s=60.0)

    async def scenario() -> list[tuple[int, int]]:
        seen = [(len(await directory.recipients("r")), orchestrator.describes)]
        orchestrator.state = "READY"
        seen.append((len(await directory.recipients("r")), orchestrator.describes))  # within the recheck: cached
        await asyncio.sleep(EMPTY_RECHECK_S + 0.05)
        seen.append((len(await directory.recipients("r")), orchestrator.describes))  # checked again: READY now
        await asyncio.sleep(EMPTY_RECHECK_S + 0.05)
        seen.append((len(await directory.recipients("r")), orchestrator.describes))  # serving: cached for ttl_s
        return seen

    assert asyncio.run(scenario()) == [(0, 1), (0, 1), (1, 2), (1, 2)]
