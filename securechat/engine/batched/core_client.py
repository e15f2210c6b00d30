"""How the event loop side of the batched engine drives its core, and how each step's tokens reach a request.

The core (scheduler + runner, ``core.py``) is stepped by one owner: a dedicated thread in this process
(``engine_thread.py``) or a child process of its own (``engine_process.py``, so model steps never compete with
the replica's event loop for the GIL). Both are an ``EngineCoreClient``; both hand each step's tokens to a
``StreamRouter``, which appends them to each request's ``Stream`` and wakes the request's event loop only when
the stream asks for it: for every token until the request has shown its first text (time to first token), then
at most once per ``delivery_interval_s``, and always when it finishes or fails. So with 64 requests in a batch the
event loop is woken a few times per interval, not 64 times per step.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from securechat.engine.batched.sampler import LogprobRecord
from securechat.engine.batched.sequence import Sequence

#: One sampled token: (seq_id, token_id, finished, its log probabilities or None).
TokenEvent = tuple[int, int, bool, LogprobRecord | None]
#: Failures that end one request, not the engine (``Stream.fail``): the core refused the sequence.
REQUEST_FAILURES = frozenset({"grammar_invalid", "grammar_unavailable"})


class EngineDead(Exception):
    """``submit`` after the core died or stopped."""


@dataclass(frozen=True, slots=True)
class CoreInfo:
    num_slots: int


@dataclass(frozen=True, slots=True)
class Delivery:
    token_ids: list[int]
    finished: bool
    failure: str | None  # an exception type name or reason code: never content
    logprobs: list[LogprobRecord | None]  # one per token id (all None unless the request asked)


@dataclass(eq=False)
class Stream:
    """Where one request's tokens wait for its consumer. ``push``/``fail`` run on the delivering thread, ``take``
    on the request's event loop."""

    seq: Sequence
    loop: asyncio.AbstractEventLoop
    delivery_interval_s: float = 0.0
    eager: bool = True  # wake on every token (until the consumer has shown its first text)
    first_token_at: float | None = None  # time.perf_counter() when the first token reached this process
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _token_ids: list[int] = field(default_factory=list)
    _logprobs: list[LogprobRecord | None] = field(default_factory=list)
    _finished: bool = False
    _failure: str | None = None
    _next_wake_at: float = 0.0

    def push(self, token_id: int, finished: bool, now: float, logprobs: LogprobRecord | None = None) -> bool:
        """Add a token; True when the consumer should be woken now."""
        with self._lock:
            self._token_ids.append(token_id)
            self._logprobs.append(logprobs)
            self._finished = finished
            if self.first_token_at is None:
                self.first_token_at = now
            if finished or self.eager or now >= self._next_wake_at:
                self._next_wake_at = now + self.delivery_interval_s
                return True
            return False

    def fail(self, error_code: str) -> None:
        with self._lock:
            self._failure = error_code

    def wake(self) -> None:
        """On the stream's loop."""
        self._wake.set()

    async def take(self) -> Delivery:
        """Everything delivered since the last call; waits while there is nothing."""
        while True:
            with self._lock:
                if self._token_ids or self._finished or self._failure is not None:
                    delivery = Delivery(self._token_ids, self._finished, self._failure, self._logprobs)
                    self._token_ids, self._logprobs = [], []
                    return delivery
            await self._wake.wait()
            self._wake.clear()


def _wake_all(streams: list[Stream]) -> None:
    for stream in streams:
        stream.wake()


class StreamRouter:
    """The live streams by sequence id; delivery wakes each event loop at most once per call."""

    def __init__(self) -> None:
        self._streams: dict[int, Stream] = {}
        self._lock = threading.Lock()

    def add(self, stream: Stream) -> None:
        with self._lock:
            self._streams[stream.seq.seq_id] = stream

    def remove(self, seq_id: int) -> Stream | None:
        with self._lock:
            return self._streams.pop(seq_id, None)

    def __len__(self) -> int:
        return len(self._streams)

    def deliver(self, events: Iterable[TokenEvent]) -> None:
        now = time.perf_counter()
        to_wake: defaultdict[asyncio.AbstractEventLoop, list[Stream]] = defaultdict(list)
        with self._lock:
            for seq_id, token_id, finished, logprobs in events:
                stream = self._streams.get(seq_id)
                if stream is None:  # aborted: its last tokens have nowhere to go
                    continue
                if finished:
                    del self._streams[seq_id]
                if stream.push(token_id, finished, now, logprobs):
                    to_wake[stream.loop].append(stream)
        _post(to_wake)

    def fail_one(self, seq_id: int, error_code: str) -> None:
        """End one request with ``error_code`` (one of REQUEST_FAILURES); the engine goes on."""
        stream = self.remove(seq_id)
        if stream is not None:
            stream.fail(error_code)
            _post({stream.loop: [stream]})

    def fail_all(self, error_code: str) -> None:
        with self._lock:
            streams, self._streams = list(self._streams.values()), {}
        to_wake: defaultdict[asyncio.AbstractEventLoop, list[Stream]] = defaultdict(list)
        for stream in streams:
            stream.fail(error_code)
            to_wake[stream.loop].append(stream)
        _post(to_wake)


def _post(to_wake: dict[asyncio.AbstractEventLoop, list[Stream]]) -> None:
    for loop, streams in to_wake.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(_wake_all, streams)


class EngineCoreClient(ABC):
    """Owns the core's lifecycle; ``submit``/``abort`` are safe from any thread and take effect at the next step
    boundary. ``ready`` resolves to the loaded core's ``CoreInfo`` (or its load error)."""

    def __init__(self) -> None:
        self.ready: Future[CoreInfo] = Future()
        self.router = StreamRouter()

    @abstractmethod
    def start(self) -> None:
        """Begin loading the model in the owner; returns at once."""

    @abstractmethod
    def submit(self, stream: Stream) -> None:
        """Add a request; raises EngineDead once the core has died or stopped."""

    @abstractmethod
    def abort(self, seq_id: int) -> None:
        """Drop a request (its consumer went away); its slot is freed at the next step boundary."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the core and wait for it (blocking: call it off the event loop). Streams in flight fail."""

    @property
    @abstractmethod
    def num_free_slots(self) -> int:
        """KV slots not held by a running sequence: a snapshot."""
