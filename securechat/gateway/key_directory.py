"""The gateway's short-lived cache of each region's workers (identity, state, public keys).

Every read of the directory would otherwise be a broadcast to every worker replica of the region, and a
broadcast bypasses Serve's queue limits; the unauthenticated routes that show it (/readyz, /v1/workers,
/v1/keys) must not let a flood of callers make that many. So each region is described at most once per
``ttl_s`` per gateway replica, and callers that arrive while a description is under way share it. Plain
prompts are sealed at the edge for the serving workers' keys from the same cache; a cached region with no
serving worker is described again first (at most every ``EMPTY_RECHECK_S``), so a worker that has just become
READY is not refused for up to ``ttl_s`` by a stale "none".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from securechat.gateway.backend import OrchestratorBackend
from securechat.keys import RecipientKey, Suite, recipients_of

SERVING_STATES = frozenset({"READY", "BUSY", "STREAMING"})
EMPTY_RECHECK_S = 0.25


def is_serving(worker: dict[str, Any]) -> bool:
    """READY, or past READY and busy with requests: a worker that takes (or queues) new requests."""
    return worker.get("state") in SERVING_STATES


class KeyDirectory:
    def __init__(self, backend: OrchestratorBackend, ttl_s: float) -> None:
        self._backend = backend
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._in_flight: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}

    async def workers(self, region: str, refresh: bool = False) -> list[dict[str, Any]]:
        """The region's live workers as the orchestrator describes them (cached for ``ttl_s``)."""
        cached = self._cache.get(region)
        if cached and not refresh and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        pending = self._in_flight.get(region)
        if pending is None:
            pending = asyncio.ensure_future(self._describe(region))
            self._in_flight[region] = pending
        # shield: one caller leaving (a client that hung up) must not cancel the others' description
        return await asyncio.shield(pending)

    async def _describe(self, region: str) -> list[dict[str, Any]]:
        try:
            workers = await self._backend.key_directory(region)
            self._cache[region] = (time.monotonic(), workers)
            return workers
        finally:
            self._in_flight.pop(region, None)

    async def recipients(self, region: str, suites: Sequence[Suite], refresh: bool = False) -> list[RecipientKey]:
        """One public key per serving worker of the region, of the earliest of ``suites`` it offers (empty: no
        live worker offers one)."""
        cached = self._cache.get(region)
        if cached and not any(is_serving(worker) for worker in cached[1]):
            refresh = refresh or time.monotonic() - cached[0] >= EMPTY_RECHECK_S
        workers = await self.workers(region, refresh=refresh)
        return recipients_of((worker for worker in workers if is_serving(worker)), suites)
