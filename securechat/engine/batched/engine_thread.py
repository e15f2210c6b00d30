"""The engine's one dedicated thread: it owns the model, steps it, and talks to event loops through queues.

In: a thread-safe inbox of commands (a new stream, an abort, stop), drained at every step boundary; the thread
blocks on it when there is no work. Out: each step's tokens, handed to each stream's ``asyncio.Queue`` with one
``call_soon_threadsafe`` per event loop per step. If a step raises, every stream in flight (and every one still
in the inbox) gets ``Failed`` and the thread marks itself dead; ``submit`` then refuses new streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final

from securechat.engine.batched.core import EngineCore, StepOutput
from securechat.engine.batched.sequence import Sequence
from securechat.logs import get_logger, log_event

THREAD_NAME: Final = "securechat-batched-engine"
logger = get_logger("engine.batched")


@dataclass(frozen=True, slots=True)
class Tokens:
    token_ids: list[int]
    finished: bool


@dataclass(frozen=True, slots=True)
class Failed:
    error_code: str  # exception type name or a reason code: never content


Item = Tokens | Failed


@dataclass(frozen=True, slots=True)
class Stream:
    """Where the engine thread delivers one request's tokens."""

    seq: Sequence
    loop: asyncio.AbstractEventLoop
    items: asyncio.Queue[Item]


@dataclass(frozen=True, slots=True)
class _Abort:
    seq_id: int


class _Stop:
    pass


_Command = Stream | _Abort | _Stop
_Deliveries = dict[asyncio.AbstractEventLoop, list[tuple[Stream, Item]]]


class EngineDead(Exception):
    """``submit`` after the thread died or stopped."""


def _post(deliveries: _Deliveries) -> None:
    for loop, batch in deliveries.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening
            loop.call_soon_threadsafe(_put_all, batch)


def _put_all(batch: list[tuple[Stream, Item]]) -> None:
    for stream, item in batch:
        stream.items.put_nowait(item)


class EngineThread:
    def __init__(self, load: Callable[[], EngineCore]) -> None:
        self._load = load
        self._inbox: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders "dead?" + enqueue against "mark dead" + drain
        self._dead = False
        self.ready: Future[EngineCore] = Future()  # the loaded core, or the load error
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to finish (streams in flight fail with ``engine_closed``) and wait for it."""
        if self._thread.is_alive():
            self._inbox.put(_Stop())
            self._thread.join()

    def submit(self, stream: Stream) -> None:
        with self._lock:
            if self._dead:
                raise EngineDead
            self._inbox.put(stream)

    def abort(self, seq_id: int) -> None:
        self._inbox.put(_Abort(seq_id))

    def _run(self) -> None:
        try:
            core = self._load()
        except BaseException as exc:
            with self._lock:
                self._dead = True
            self.ready.set_exception(exc)
            return
        self.ready.set_result(core)
        streams: dict[int, Stream] = {}
        try:
            while self._apply(self._take_commands(block=not core.has_work), core, streams):
                if core.has_work:
                    self._deliver(core.step(), streams)
            self._fail_all(streams, "engine_closed")
        except BaseException as exc:
            log_event(logger, "engine_failed", engine="batched", error_code=type(exc).__name__)
            self._fail_all(streams, type(exc).__name__)

    def _take_commands(self, block: bool) -> list[_Command]:
        commands: list[_Command] = [self._inbox.get()] if block else []
        with contextlib.suppress(queue.Empty):
            while True:
                commands.append(self._inbox.get_nowait())
        return commands

    @staticmethod
    def _apply(commands: list[_Command], core: EngineCore, streams: dict[int, Stream]) -> bool:
        """Apply inbox commands at a step boundary; False when asked to stop."""
        for command in commands:
            if isinstance(command, _Stop):
                return False
            if isinstance(command, _Abort):
                if streams.pop(command.seq_id, None) is not None:
                    core.abort(command.seq_id)
            else:
                streams[command.seq.seq_id] = command
                core.add(command.seq)
        return True

    @staticmethod
    def _deliver(outputs: list[StepOutput], streams: dict[int, Stream]) -> None:
        deliveries: _Deliveries = defaultdict(list)
        for out in outputs:
            stream = streams.get(out.seq.seq_id)
            if stream is None:
                continue
            deliveries[stream.loop].append((stream, Tokens([out.token_id], out.finished)))
            if out.finished:
                del streams[out.seq.seq_id]
        _post(deliveries)

    def _fail_all(self, streams: dict[int, Stream], error_code: str) -> None:
        """Mark the thread dead and fail every stream in flight or still in the inbox."""
        with self._lock:
            self._dead = True
            for command in self._take_commands(block=False):
                if isinstance(command, Stream):
                    streams[command.seq.seq_id] = command
        deliveries: _Deliveries = defaultdict(list)
        for stream in streams.values():
            deliveries[stream.loop].append((stream, Failed(error_code)))
        streams.clear()
        _post(deliveries)
