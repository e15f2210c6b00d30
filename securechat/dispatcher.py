"""The orchestrator's core: route a sealed envelope to a worker replica that can open it, and frame the reply.

It sees ciphertext only. For each envelope it validates the header, refuses replays of a request id, chooses a
replica of the envelope's region whose key id is among the wrapped ones (holding the slots of replicas it passed
over, so the router's next choice falls elsewhere), dispatches to exactly that replica and re-yields its items
(wire bytes: one or more length-prefixed frames each, one item per flush of the worker). A replica lost before
its first frame is replaced transparently; after that the client gets a typed error frame, never a silently
truncated stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from securechat.config import DispatchSettings
from securechat.envelope import Envelope
from securechat.errors import ErrorCode
from securechat.framing import encode_frame
from securechat.host_limits import HostLimits
from securechat.logs import get_logger, log_event
from securechat.stream import make_error_frame

logger = get_logger("dispatcher")
RECENT_REQUEST_IDS = 100_000


@dataclass(slots=True)
class _Relay:
    """Whether any frame of the answer has reached the caller (then a lost replica cannot be retried)."""

    sent_any: bool = False


class WorkerLost(Exception):
    """The chosen replica died or became unreachable."""


class Overloaded(Exception):
    """The pool's queues are full; the caller should retry later."""


@dataclass(frozen=True, slots=True)
class Selection:
    """A reserved slot on one replica and what it publishes about itself."""

    replica_id: str
    worker_id: str
    key_ids: frozenset[str]
    handle: Any = None  # the runtime's own selection object


class WorkerPool(ABC):
    """One region's worker replicas as the orchestrator sees them."""

    @abstractmethod
    def choose(self) -> contextlib.AbstractAsyncContextManager[Selection]:
        """Reserve a slot on one replica (released on exit unless dispatched). May raise Overloaded."""

    @abstractmethod
    def dispatch(self, selection: Selection, envelope: bytes, limits: HostLimits) -> AsyncGenerator[bytes, None]:
        """Send to exactly the selected replica; yield its items of wire bytes. Raise WorkerLost if it dies.

        ``limits`` are the tenant's, enforced by the worker whatever the sealed body asks for.
        """

    @abstractmethod
    async def describe(self, *, allow_stale: bool = True) -> list[dict[str, Any]]:
        """Public identity and state of every live replica (no secrets). ``allow_stale``: when some replica
        cannot answer in time, return the last complete answer instead of nothing."""

    @abstractmethod
    async def attest(self, nonce: str) -> list[dict[str, Any]]:
        """``describe`` plus each live replica's attestation document answering ``nonce``."""


def new_request_id() -> str:
    return uuid.uuid4().hex


class InferenceDispatcher:
    def __init__(self, pools: Mapping[str, WorkerPool], settings: DispatchSettings | None = None) -> None:
        self._pools = dict(pools)
        self._settings = settings or DispatchSettings()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._in_flight = 0

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self._pools)

    async def key_directory(self, region: str) -> list[dict[str, Any]]:
        pool = self._pools.get(region)
        return [] if pool is None else await pool.describe()

    async def attestations(self, region: str, nonce: str) -> list[dict[str, Any]]:
        pool = self._pools.get(region)
        return [] if pool is None else await pool.attest(nonce)

    async def dispatch(self, envelope_bytes: bytes, limits: HostLimits | None = None) -> AsyncGenerator[bytes, None]:
        """Yield items of length-prefixed wire frames; failures before any frame are a single error frame."""
        try:
            envelope = Envelope.from_bytes(envelope_bytes)
        except ValueError:
            yield encode_frame(make_error_frame(ErrorCode.INVALID_ENVELOPE, "unknown"))
            return
        request_id = envelope.header.request_id
        pool = self._pools.get(envelope.header.region)
        if pool is None:
            yield encode_frame(make_error_frame(ErrorCode.UNKNOWN_REGION, request_id))
            return
        if self._in_flight >= self._settings.max_in_flight:
            log_event(
                logger,
                "dispatch_refused",
                level=logging.WARNING,
                request_id=request_id,
                error_code=ErrorCode.OVERLOADED.value,
                queue_depth=self._in_flight,
            )
            yield encode_frame(make_error_frame(ErrorCode.OVERLOADED, request_id))
            return
        if not self._admit_request_id(request_id):
            yield encode_frame(make_error_frame(ErrorCode.DUPLICATE_REQUEST, request_id))
            return
        self._in_flight += 1
        try:
            admitted = self._dispatch_admitted(pool, envelope, envelope_bytes, limits or HostLimits())
            async with aclosing(admitted) as frames:
                async for frame in frames:
                    yield frame
        finally:
            self._in_flight -= 1

    @property
    def num_in_flight(self) -> int:
        return self._in_flight

    async def _dispatch_admitted(
        self, pool: WorkerPool, envelope: Envelope, envelope_bytes: bytes, limits: HostLimits
    ) -> AsyncGenerator[bytes, None]:
        request_id = envelope.header.request_id
        started = time.perf_counter()
        outcome = ErrorCode.NO_WORKER
        for attempt in range(1, self._settings.max_attempts + 1):
            relay = _Relay()
            try:
                async with contextlib.AsyncExitStack() as reserved:
                    selection = await self._choose_for(pool, envelope, reserved)
                    if selection is None:
                        outcome = ErrorCode.STALE_KEYS
                        break
                    log_event(
                        logger,
                        "dispatch",
                        request_id=request_id,
                        worker_id=selection.worker_id,
                        attempt=attempt,
                        bytes=len(envelope_bytes),
                    )
                    async with aclosing(self._relay(pool, selection, envelope_bytes, limits, relay)) as frames:
                        async for frame in frames:
                            yield frame
                log_event(
                    logger,
                    "dispatch_done",
                    request_id=request_id,
                    elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
                )
                return
            except WorkerLost:
                log_event(
                    logger,
                    "worker_lost",
                    level=logging.WARNING,
                    request_id=request_id,
                    attempt=attempt,
                    frames=int(relay.sent_any),
                )
                if relay.sent_any:
                    yield encode_frame(make_error_frame(ErrorCode.WORKER_LOST, request_id))
                    return
                outcome = ErrorCode.NO_WORKER
            except (Overloaded, TimeoutError):  # queues full, or no slot within choose_timeout_s
                outcome = ErrorCode.OVERLOADED
                break
        log_event(logger, "dispatch_failed", level=logging.WARNING, request_id=request_id, error_code=outcome.value)
        yield encode_frame(make_error_frame(outcome, request_id))

    @staticmethod
    async def _relay(
        pool: WorkerPool, selection: Selection, envelope_bytes: bytes, limits: HostLimits, relay: _Relay
    ) -> AsyncGenerator[bytes, None]:
        """The replica's items, noting when the first has gone out. A worker sends its start frame inside its
        first item, so a replica lost before that item has sent nothing and the request can be retried."""
        # aclosing: the worker's stream is closed inside the replica's reserved slot, as Serve requires.
        async with aclosing(pool.dispatch(selection, envelope_bytes, limits)) as items:
            async for item in items:
                relay.sent_any = True
                yield item

    async def _choose_for(
        self, pool: WorkerPool, envelope: Envelope, keep: contextlib.AsyncExitStack
    ) -> Selection | None:
        """Reserve a replica whose key id the envelope wraps (its slot joins ``keep``); None if none can open it.

        Replicas passed over keep their reserved slot until a match is found, so the router offers others.
        """
        wanted = frozenset(envelope.header.key_ids)
        refused: set[str] = set()
        keys_are_live: bool | None = None  # asked of the pool once, only if the router repeats a refused replica
        async with asyncio.timeout(self._settings.choose_timeout_s), contextlib.AsyncExitStack() as passed_over:
            while True:
                chooser = pool.choose()
                selection = await chooser.__aenter__()
                if selection.key_ids & wanted:
                    keep.push_async_exit(chooser)
                    return selection
                passed_over.push_async_exit(chooser)
                if selection.replica_id in refused and keys_are_live is None:
                    keys_are_live = await self._region_holds_keys(pool, wanted)
                    if not keys_are_live:
                        return None
                refused.add(selection.replica_id)

    @staticmethod
    async def _region_holds_keys(pool: WorkerPool, wanted: frozenset[str]) -> bool:
        # Fail closed: a stale list could name keys of replicas that are gone, and then the caller would wait
        # for them until choose_timeout_s instead of being told to refetch keys.
        described = await pool.describe(allow_stale=False)
        live = {key["key_id"] for worker in described for key in worker.get("keys", [])}
        return bool(live & wanted)

    def _admit_request_id(self, request_id: str) -> bool:
        """Refuse a request id seen recently: a replayed envelope must not run twice."""
        if request_id in self._seen:
            return False
        self._seen[request_id] = None
        if len(self._seen) > RECENT_REQUEST_IDS:
            self._seen.popitem(last=False)
        return True
