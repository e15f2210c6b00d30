"""A worker's memory of the envelopes it has run: each runs at most once on a worker, and only until it expires.

The host can replay anything it has seen. An envelope that runs twice lets it compare the two runs (the token
counts, the timing) while it changes what it serves (which chunks a collection holds), so a worker refuses an
envelope it has already run, and one past the ``expires_at`` its authenticated header names. It checks only
after the envelope opened: a forged header cannot fill the memory or block a real request's id.

Memory is bounded. Entries are dropped when their envelope expires (it would be refused anyway); if more than
``max_entries`` are alive, the one that expires first is dropped and the guard refuses, from then on, every
envelope expiring no later than it (``floor``): such an envelope could be the one it forgot. An envelope may not
claim to live longer than ``max_ttl_s``, so nothing has to be remembered longer than that.

What is left: an envelope is wrapped for every worker of its region, so within its lifetime the host can run it
once on each of them (at most as many runs as the region has workers).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from enum import StrEnum


class ReplayVerdict(StrEnum):
    ADMITTED = "admitted"
    SEEN = "seen"  # this worker ran it already
    EXPIRED = "expired"  # past its expires_at
    TOO_LONG = "too_long"  # claims a lifetime beyond max_ttl_s
    FORGOTTEN = "forgotten"  # expires no later than an entry dropped for room: it could be that one


class ReplayGuard:
    def __init__(self, max_ttl_s: float, max_entries: int, clock: Callable[[], float] = time.time) -> None:
        if max_ttl_s <= 0 or max_entries < 1:
            raise ValueError("max_ttl_s and max_entries must be positive")
        self.max_ttl_s = max_ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._alive: dict[tuple[str, str], int] = {}  # (tenant, request id) -> expires_at
        self._by_expiry: list[tuple[int, tuple[str, str]]] = []  # a heap over the same entries
        self.floor = 0  # envelopes expiring at or before this are refused

    def __len__(self) -> int:
        return len(self._alive)

    def admit(self, tenant_id: str, request_id: str, expires_at: int) -> ReplayVerdict:
        """Remember the envelope and say ADMITTED, or say why it must not run."""
        now = self._clock()
        key = (tenant_id, request_id)
        with self._lock:
            self._drop_expired(now)
            if expires_at <= now:
                return ReplayVerdict.EXPIRED
            if expires_at > now + self.max_ttl_s:
                return ReplayVerdict.TOO_LONG
            if key in self._alive:
                return ReplayVerdict.SEEN
            if expires_at <= self.floor:
                return ReplayVerdict.FORGOTTEN
            self._alive[key] = expires_at
            heapq.heappush(self._by_expiry, (expires_at, key))
            while len(self._alive) > self.max_entries:
                dropped_at, dropped = heapq.heappop(self._by_expiry)
                del self._alive[dropped]
                self.floor = max(self.floor, dropped_at)
            return ReplayVerdict.ADMITTED

    def _drop_expired(self, now: float) -> None:
        while self._by_expiry and self._by_expiry[0][0] <= now:
            _, key = heapq.heappop(self._by_expiry)
            del self._alive[key]
