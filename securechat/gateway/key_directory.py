"""The gateway's short-lived cache of each region's worker keys, used to seal plain prompts at the edge."""

from __future__ import annotations

import time
from typing import Any

from securechat.gateway.backend import OrchestratorBackend
from securechat.keys import RecipientKey


class KeyDirectory:
    def __init__(self, backend: OrchestratorBackend, ttl_s: float) -> None:
        self._backend = backend
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, list[RecipientKey]]] = {}

    async def recipients(self, region: str, refresh: bool = False) -> list[RecipientKey]:
        """Public keys of the region's READY-or-working workers (empty: no live worker)."""
        cached = self._cache.get(region)
        if cached and not refresh and time.monotonic() - cached[0] < self._ttl_s:
            return cached[1]
        workers = await self._backend.key_directory(region)
        keys = [RecipientKey.from_dict(key) for worker in workers if _serving(worker) for key in worker["keys"]]
        self._cache[region] = (time.monotonic(), keys)
        return keys


def _serving(worker: dict[str, Any]) -> bool:
    return worker.get("state") in ("READY", "BUSY", "STREAMING")
