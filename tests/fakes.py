"""Test doubles for the engine contract."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from securechat.dispatcher import Selection, WorkerLost
from securechat.engine.base import ChatMessage, Engine, EngineDeadError, GenerationRequest, GenerationStats, TextChunk
from securechat.envelope import Envelope, EnvelopeHeader
from securechat.host_limits import HostLimits


class ScriptedEngine(Engine):
    """Streams a fixed list of chunks; can fail after ``fail_after`` chunks with a given exception."""

    def __init__(
        self,
        chunks: Sequence[str] = ("Hello", ", ", "world"),
        fail_after: int | None = None,
        failure: Exception | None = None,
        delay_s: float = 0.0,
        fail_start: bool = False,
        max_concurrent_requests: int = 1,
        die_on: str | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self.fail_after = fail_after
        self.failure = failure
        self.delay_s = delay_s
        self.fail_start = fail_start
        self.max_concurrent_requests = max_concurrent_requests
        self.die_on = die_on  # a prompt that kills the engine (EngineDeadError), like a broken GPU
        self.seen: list[GenerationRequest] = []
        self.closed_early = 0

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("boom")

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return sum(len(m.content.split()) for m in messages)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextChunk]:
        self.seen.append(request)
        if self.die_on is not None and request.messages[-1].content == self.die_on:
            raise EngineDeadError("engine_dead")
        sent = 0
        try:
            for index, text in enumerate(self.chunks):
                if self.fail_after is not None and index == self.fail_after:
                    assert self.failure is not None
                    raise self.failure
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                sent += 1
                yield TextChunk(text=text, num_tokens=1)
        except (GeneratorExit, asyncio.CancelledError):  # closed, or its consumer task was cancelled
            self.closed_early += 1
            raise
        stats = GenerationStats(ttft_ms=1.0, total_ms=10.0, input_tokens=3, output_tokens=sent)
        yield TextChunk(text="", num_tokens=0, stats=stats)


class FakePool:
    """An in-process WorkerPool over EnclaveWorkers, with fault injection by replica id."""

    def __init__(self, workers: Sequence[Any]) -> None:
        self.workers = {f"replica-{i}": worker for i, worker in enumerate(workers)}
        self._order = list(self.workers)
        self._next = 0
        self.reserved: dict[str, int] = dict.fromkeys(self.workers, 0)
        self.die_before_first_frame: set[str] = set()
        self.die_after_items: dict[str, int] = {}  # items of wire bytes, one per flush (start frame in the 1st)
        self.dispatched_to: list[str] = []
        self.headers: list[EnvelopeHeader] = []  # of every envelope dispatched, in order

    def choose(self) -> Any:
        pool = self

        @contextlib.asynccontextmanager
        async def chooser() -> AsyncIterator[Selection]:
            # Least-reserved replica first, then round robin: like the real router's load preference.
            ids = sorted(
                pool._order,
                key=lambda r: (pool.reserved[r], (pool._order.index(r) - pool._next) % len(pool._order)),
            )
            replica_id = ids[0]
            pool._next = (pool._order.index(replica_id) + 1) % len(pool._order)
            worker = pool.workers[replica_id]
            pool.reserved[replica_id] += 1
            try:
                yield Selection(replica_id, worker.worker_id, frozenset(k.key_id for k in worker.identity.public_keys))
            finally:
                pool.reserved[replica_id] -= 1

        return chooser()

    async def dispatch(
        self, selection: Selection, envelope: bytes, limits: HostLimits | None = None
    ) -> AsyncGenerator[bytes, None]:
        self.dispatched_to.append(selection.replica_id)
        self.headers.append(Envelope.from_bytes(envelope).header)
        if selection.replica_id in self.die_before_first_frame:
            raise WorkerLost()
        limit = self.die_after_items.get(selection.replica_id)
        worker = self.workers[selection.replica_id]
        count = 0
        async for frame in worker.run(Envelope.from_bytes(envelope), limits):
            if limit is not None and count == limit:
                raise WorkerLost()
            count += 1
            yield frame

    async def describe(self, *, allow_stale: bool = True) -> list[dict[str, Any]]:
        return [{**w.identity.to_dict(), "state": w.state.value} for w in self.workers.values()]

    async def attest(self, nonce: str) -> list[dict[str, Any]]:
        described = await self.describe()
        return [{**d, "attestation": w.attest(nonce)} for d, w in zip(described, self.workers.values(), strict=True)]
