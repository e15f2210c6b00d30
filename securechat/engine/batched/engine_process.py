"""The core stepped in a child process of its own (``engine.core: process``, the default), as vLLM V1 does.

A worker replica's event loop does Ray's streaming, pacing, sealing and detokenisation; in one process it holds
the GIL most of the time and a model step, which needs the GIL between every op, crawls. Here the model, the KV
cache and (on a GPU) the CUDA graphs live in a child process started with this interpreter
(``main(fd)`` below, run by ``python -c``) that steps the core with nothing else to do.

The child is part of the replica (the same simulated enclave): it inherits the replica's environment (devices,
caches), talks only over an anonymous socket pair, never logs content, and exits when the replica goes away
(end of file on the socket). Messages are pickled tuples, parent -> child::

    ("load", BatchedEngineConfig, device)   first, once
    ("add", seq_id, prompt_ids, SamplingParams, max_new_tokens, grammar, prefill_from, group_size)
    ("abort", seq_id)
    ("stop",)

child -> parent: ("ready", num_slots) | ("load_failed", error type); then ("tokens", [(seq_id, token_id,
finished, logprobs), ...], num_free_slots) with the tokens of one or more steps (at once for a sequence's first
tokens and its last, else at most every SEND_INTERVAL_S); ("rejected", seq_id, code) when a sequence's grammar
does not compile (that request fails); ("idle", num_free_slots) when it runs out of work; ("failed", error
type) when a step raised (the child then exits).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from securechat.engine.batched.config import BatchedEngineConfig
from securechat.engine.batched.core_client import CoreInfo, EngineCoreClient, EngineDead, Stream
from securechat.logs import get_logger, log_event

logger = get_logger("engine.batched")
STOP_TIMEOUT_S: Final = 10.0
# Steps' tokens go to the parent at most this often (one message per step would cost the parent a wake-up and
# an unpickle per token at one stream); the first tokens of a sequence and the last go at once.
SEND_INTERVAL_S: Final = 0.01
EAGER_TOKENS: Final = 4
_PACKAGE_ROOT: Final = str(Path(__file__).resolve().parents[3])  # the directory holding ``securechat/``


class EngineLoadFailed(Exception):
    """The child could not load the model; the message is the error's type name (content-free)."""


class EngineProcess(EngineCoreClient):
    def __init__(self, config: BatchedEngineConfig, device: str) -> None:
        super().__init__()
        self._config = config
        self._device = device
        self._conn: Connection | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False  # set by stop(): the child's end of the pipe closing is then expected
        self._lock = threading.Lock()  # orders "dead?" + register + send against "mark dead" + fail all
        self._send_lock = threading.Lock()  # a Connection is not safe for concurrent senders
        self._dead = False
        self._num_free_slots = 0

    @property
    def num_free_slots(self) -> int:
        return self._num_free_slots

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        ours, theirs = socket.socketpair()
        self._conn = Connection(ours.detach())
        child_fd = theirs.detach()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", f"from {__name__} import main; main({child_fd})"],
                pass_fds=(child_fd,),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(child_fd)
        self._send(("load", self._config, self._device))
        self._reader = threading.Thread(target=self._read, name="securechat-engine-reader", daemon=True)
        self._reader.start()

    def submit(self, stream: Stream) -> None:
        seq = stream.seq
        with self._lock:
            if self._dead:
                raise EngineDead
            self.router.add(stream)
            message = ("add", seq.seq_id, seq.prompt_ids, seq.sampling, seq.max_new_tokens, seq.grammar)
            self._send((*message, seq.prefill_from, seq.group_size))

    def abort(self, seq_id: int) -> None:
        if self.router.remove(seq_id) is not None:
            with contextlib.suppress(OSError):  # the child is gone: nothing left to abort
                self._send(("abort", seq_id))

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            self._send(("stop",))
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join()
        if self._conn is not None:
            self._conn.close()
        self._mark_dead("engine_closed")

    def _send(self, message: tuple[Any, ...]) -> None:
        assert self._conn is not None
        with self._send_lock:
            self._conn.send(message)

    def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            kind, value = conn.recv()
            if kind != "ready":
                self.ready.set_exception(EngineLoadFailed(str(value)))
                self._mark_dead("engine_load_failed")
                return
            self._num_free_slots = int(value)
            self.ready.set_result(CoreInfo(num_slots=int(value)))
            while True:
                message = conn.recv()
                if message[0] == "tokens":
                    self._num_free_slots = message[2]  # first: a consumer woken below may look at it
                    self.router.deliver(message[1])
                elif message[0] == "idle":
                    self._num_free_slots = message[1]
                elif message[0] == "rejected":
                    self.router.fail_one(message[1], str(message[2]))
                else:  # "failed": the exception's type name
                    log_event(
                        logger, "engine_failed", level=logging.ERROR, engine="batched", error_code=str(message[1])
                    )
                    self._mark_dead(str(message[1]))
                    return
        except (EOFError, OSError):
            if not self.ready.done():
                self.ready.set_exception(EngineLoadFailed("engine_process_exited"))
            elif not self._stopping:  # the child died (killed, or crashed in native code)
                returncode = self._process.poll() if self._process is not None else None
                log_event(
                    logger,
                    "engine_failed",
                    level=logging.ERROR,
                    engine="batched",
                    error_code="engine_process_exited",
                    reason=f"returncode:{returncode}",
                )
            self._mark_dead("engine_process_exited")

    def _mark_dead(self, error_code: str) -> None:
        with self._lock:
            self._dead = True
        self.router.fail_all(error_code)


# -- the child ---------------------------------------------------------------------------------------------
def serve(conn: Connection) -> None:
    """Load the core, then step it until told to stop or the parent goes away."""
    import torch
    from transformers.utils import logging as hf_logging

    from securechat.engine.batched.core import GrammarRejected, load_core
    from securechat.engine.batched.sequence import Sequence

    hf_logging.disable_progress_bar()  # the replica's log is not a terminal
    _, config, device = conn.recv()
    try:
        core = load_core(config, torch.device(device))
    except BaseException as exc:
        conn.send(("load_failed", type(exc).__name__))
        return
    conn.send(("ready", core.num_slots))

    def apply(message: tuple[Any, ...]) -> bool:
        if message[0] == "add":
            _, seq_id, prompt_ids, sampling, max_new_tokens, grammar, prefill_from, group_size = message
            seq = Sequence(prompt_ids, sampling, max_new_tokens, seq_id=seq_id, grammar=grammar)
            seq.prefill_from, seq.group_size = prefill_from, group_size
            try:
                core.add(seq)
            except GrammarRejected as rejected:
                conn.send(("rejected", seq_id, str(rejected)))
        elif message[0] == "abort":
            core.abort(message[1])
        else:  # "stop"
            return False
        return True

    pending: list[tuple[Any, ...]] = []
    last_sent = time.monotonic()
    try:
        while True:
            if not core.has_work:
                conn.send(("idle", core.num_free_slots))
                if not apply(conn.recv()):  # blocks: nothing to do until the parent asks
                    return
            while conn.poll():
                if not apply(conn.recv()):
                    return
            if core.has_work:
                urgent = False
                for out in core.step():
                    pending.append((out.seq.seq_id, out.token_id, out.finished, out.logprobs))
                    # A young sequence (its first text may need a few tokens) or an ending one goes out now.
                    urgent = urgent or out.finished or len(out.seq.output_ids) <= EAGER_TOKENS
                now = time.monotonic()
                if pending and (urgent or now - last_sent >= SEND_INTERVAL_S):
                    conn.send(("tokens", pending, core.num_free_slots))
                    pending, last_sent = [], now
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return  # the replica went away
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send(("failed", type(exc).__name__))


def main(fd: int) -> None:
    """The child's entry point: ``fd`` is its end of the socket pair."""
    conn = Connection(fd)
    try:
        serve(conn)
    finally:
        conn.close()
