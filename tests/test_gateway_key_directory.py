"""The gateway's worker directory: cached per region, but a cached "no serving worker" is checked again soon,
so a worker that has just become READY is not refused for the whole cache lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from securechat.gateway.key_directory import EMPTY_RECHECK_S, KeyDirectory
from securechat.host_limits import HostLimits
from securechat.keys import Suite, WorkerKeys

KEYS = WorkerKeys.generate((Suite.HPKE_X25519, Suite.HPKE_MLKEM768_X25519))
HYBRID_FIRST = (Suite.HPKE_MLKEM768_X25519, Suite.HPKE_X25519)


class Orchestrator:
    """Describes one region whose single worker's state the test sets; counts the descriptions."""

    def __init__(self) -> None:
        self.state = "MODEL_LOADING"
        self.describes = 0

    def infer(self, envelope: bytes, limits: HostLimits | None = None) -> AsyncIterator[bytes]:
        raise AssertionError("nothing is dispatched here")

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        self.describes += 1
        keys = [key.to_dict() for key in KEYS.public_keys]
        return [{"worker_id": "w0", "region": region, "state": self.state, "keys": keys}]

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        raise AssertionError("not used")


def test_an_empty_region_is_described_again_soon_and_a_serving_one_is_cached() -> None:
    orchestrator = Orchestrator()
    directory = KeyDirectory(orchestrator, ttl_s=60.0)

    async def seen() -> tuple[int, int]:
        return len(await directory.recipients("r", HYBRID_FIRST)), orchestrator.describes

    async def scenario() -> list[tuple[int, int]]:
        observed = [await seen()]
        orchestrator.state = "READY"
        observed.append(await seen())  # within the recheck: cached
        await asyncio.sleep(EMPTY_RECHECK_S + 0.05)
        observed.append(await seen())  # checked again: READY now
        await asyncio.sleep(EMPTY_RECHECK_S + 0.05)
        observed.append(await seen())  # serving: cached for ttl_s
        return observed

    assert asyncio.run(scenario()) == [(0, 1), (0, 1), (1, 2), (1, 2)]


def test_plain_prompts_are_sealed_to_one_key_per_worker_in_the_configured_order() -> None:
    orchestrator = Orchestrator()
    orchestrator.state = "READY"
    directory = KeyDirectory(orchestrator, ttl_s=60.0)
    hybrid = asyncio.run(directory.recipients("r", HYBRID_FIRST))
    assert hybrid == [KEYS.public_key(Suite.HPKE_MLKEM768_X25519)]
    assert asyncio.run(directory.recipients("r", (Suite.HPKE_X25519,))) == [KEYS.public_key(Suite.HPKE_X25519)]
    assert asyncio.run(directory.recipients("r", (Suite.RSA_OAEP,))) == []
