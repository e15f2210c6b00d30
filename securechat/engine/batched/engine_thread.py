"""The core stepped by one dedicated thread of this process (``engine.core: thread``).

In: a thread-safe inbox of commands (a new stream, an abort, stop), drained at every step boundary; the thread
blocks on it when there is no work. Out: each step's tokens, handed to the ``StreamRouter``. If a step raises,
every stream in flight (and every one still in the inbox) fails and the thread marks itself dead; ``submit``
then refuses new streams. The model shares the process, and so the GIL, with the event loop: the process variant
(``engine_process.py``) avoids that; this one starts faster and is what unit tests drive.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from securechat.engine.batched.core import EngineCore, GrammarRejected
from securechat.engine.batched.core_client import CoreInfo, EngineCoreClient, EngineDead, Stream
from securechat.logs import get_logger, log_event

THREAD_NAME: Final = "securechat-batched-engine"
logger = get_logger("engine.batched")


@dataclass(frozen=True, slots=True)
class _Abort:
    seq_id: int


class _Stop:
    pass


_Command = Stream | _Abort | _Stop


class EngineThread(EngineCoreClient):
    def __init__(self, load: Callable[[], EngineCore]) -> None:
        super().__init__()
        self._load = load
        self._core: EngineCore | None = None
        self._inbox: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders "dead?" + enqueue against "mark dead" + drain
        self._dead = False
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    @property
    def core(self) -> EngineCore | None:
        """The loaded core (tests reach into it); None until loaded."""
        return self._core

    @property
    def num_free_slots(self) -> int:
        return self._core.num_free_slots if self._core is not None else 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
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
        self._core = core
        self.ready.set_result(CoreInfo(core.num_slots))
        try:
            while self._apply(self._take_commands(block=not core.has_work), core):
                if core.has_work:
                    self.router.deliver((o.seq.seq_id, o.token_id, o.finished, o.logprobs) for o in core.step())
            self._fail_all("engine_closed")
        except BaseException as exc:
            log_event(logger, "engine_failed", engine="batched", error_code=type(exc).__name__)
            self._fail_all(type(exc).__name__)

    def _take_commands(self, block: bool) -> list[_Command]:
        commands: list[_Command] = [self._inbox.get()] if block else []
        with contextlib.suppress(queue.Empty):
            while True:
                commands.append(self._inbox.get_nowait())
        return commands

    def _apply(self, commands: list[_Command], core: EngineCore) -> bool:
        """Apply inbox commands at a step boundary; False when asked to stop."""
        for command in commands:
            if isinstance(command, _Stop):
                return False
            if isinstance(command, _Abort):
                if self.router.remove(command.seq_id) is not None:
                    core.abort(command.seq_id)
            else:
                self.router.add(command)
                try:
                    core.add(command.seq)
                except GrammarRejected as rejected:
                    self.router.fail_one(command.seq.seq_id, str(rejected))
        return True

    def _fail_all(self, error_code: str) -> None:
        """Mark the thread dead and fail every stream in flight or still in the inbox."""
        with self._lock:
            self._dead = True
            for command in self._take_commands(block=False):
                if isinstance(command, Stream):
                    self.router.add(command)
        self.router.fail_all(error_code)
