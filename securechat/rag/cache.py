"""Decrypted collections kept in a worker's memory: bounded in bytes, dropped when idle, never written anywhere.

Entries are keyed by (tenant, collection, key fingerprint): a request with another key never sees what was
decrypted with this one, and must open the blobs itself (and fails if its key is wrong). An entry is valid only
for the store generation it was built from; any write or deletion in the collection moves the generation on,
so the next query rebuilds it and deleted documents are never returned.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from securechat.rag.index import ExactIndex

CacheKey = tuple[str, str, str]  # tenant_id, collection_id, key fingerprint


@dataclass(slots=True)
class _Entry:
    generation: int
    index: ExactIndex
    nbytes: int
    last_used: float


class CollectionCache:
    def __init__(self, max_bytes: int, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.idle_s = idle_s
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, generation: int) -> ExactIndex | None:
        with self._lock:
            self._drop_idle()
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.generation != generation:
                self._remove(key)
                return None
            entry.last_used = self._clock()
            self._entries.move_to_end(key)
            return entry.index

    def put(self, key: CacheKey, generation: int, index: ExactIndex) -> None:
        nbytes = index.nbytes
        with self._lock:
            if key in self._entries:
                self._remove(key)
            if nbytes > self.max_bytes:
                return  # larger than the whole budget: serve it, keep nothing
            while self._bytes + nbytes > self.max_bytes:
                self._remove(next(iter(self._entries)))
            self._entries[key] = _Entry(generation, index, nbytes, self._clock())
            self._bytes += nbytes

    def drop_idle(self) -> None:
        with self._lock:
            self._drop_idle()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop_idle(self) -> None:
        now = self._clock()
        for key in [k for k, e in self._entries.items() if now - e.last_used > self.idle_s]:
            self._remove(key)

    def _remove(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.nbytes
