"""How often anonymous callers may make the workers attest: the guard in front of GET /v1/attestation.

Each fresh nonce costs one broadcast to every worker replica of the region(s), and a broadcast bypasses Serve's
queue limits, so an unauthenticated flood of distinct nonces could keep every worker signing instead of serving.
Documents cannot be shared across callers' nonces (each verifier's freshness check needs its own nonce in the
document), so the guard is a rate: one token bucket per gateway replica (``attestations_per_minute``, bursts up
to a minute's worth), 429 ``rate_limited`` with Retry-After beyond it. A repeated nonce (a client's retry) is
answered from a small cache without a broadcast, and concurrent requests for one nonce share one broadcast.
Clients attest once per key rotation, not per request, so an honest client needs a handful a minute.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from securechat.tenants.buckets import TokenBucket

Documents = list[dict[str, Any]]


class AttestationRateLimited(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__("rate_limited")
        self.retry_after_s = retry_after_s


class AttestationGate:
    def __init__(
        self,
        per_minute: int,
        *,
        cache_ttl_s: float = 10.0,
        cache_size: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._bucket = TokenBucket.full(per_minute, clock())
        self._cache_ttl_s = cache_ttl_s
        self._cache_size = cache_size
        self._cache: OrderedDict[tuple[str, ...], tuple[float, Documents]] = OrderedDict()
        self._in_flight: dict[tuple[str, ...], asyncio.Future[Documents]] = {}

    async def documents(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[Documents]]) -> Documents:
        """``fetch()``'s documents for ``key`` (the nonce and the regions asked), or ``AttestationRateLimited``."""
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._cache_ttl_s:
            return cached[1]
        pending = self._in_flight.get(key)
        if pending is None:
            self._bucket.refill(now)
            wait_s = self._bucket.wait_s(1)
            if wait_s > 0:
                raise AttestationRateLimited(wait_s)
            self._bucket.take(1)
            pending = asyncio.ensure_future(self._fetch(key, fetch))
            self._in_flight[key] = pending
        return await asyncio.shield(pending)

    async def _fetch(self, key: tuple[str, ...], fetch: Callable[[], Awaitable[Documents]]) -> Documents:
        try:
            documents = await fetch()
            self._cache[key] = (self._clock(), documents)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return documents
        finally:
            self._in_flight.pop(key, None)
