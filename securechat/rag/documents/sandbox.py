"""Parsing in a child process with a time and a memory budget, so one bad file cannot stall or kill a replica.

The shape: each replica starts one small parse server (``parse_server``, a fresh interpreter with only the
parsers imported) and keeps a private socket to it. To parse a document the replica makes a pipe, sends the
server the bytes, the budget and the pipe's write end; the server forks a child per document, which caps its
own CPU time and address space, parses, and writes its pid and then the outcome into the pipe; the replica
reads the pipe until EOF or its wall-clock deadline, and kills the child past that. So the replica never
forks itself (it has threads), the child starts from a small process (its memory budget is its own), and
plaintext only moves between the replica and its own server over a socket and pipes nobody else holds.

The outcome is JSON, never pickle: the child has run a parser on hostile bytes, so the replica trusts nothing
it sends beyond a checked shape. Running out of time or memory, dying, or answering garbage refuses the
document as ``document_too_complex`` (or ``malformed_document`` for a bad answer); a parser's own refusals
(malformed, encrypted, no text layer) come back by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Final

from securechat.errors import ErrorCode
from securechat.rag.documents.model import DocumentRefused, ParsedDocument, Section

DEFAULT_TIME_S: Final = 30.0
DEFAULT_MEMORY_BYTES: Final = 1 << 30
_WAIT_MARGIN_S: Final = 5.0  # the CPU limit stops a busy child; this stops one that sleeps or blocks
_MAX_OUTCOME_BYTES: Final = 256 << 20
REQUEST_HEAD: Final = struct.Struct("!II")  # header length, data length
PID_HEAD: Final = struct.Struct("!I")
_CHILD_CODES: Final = frozenset(  # the refusals a child may answer with; anything else reads as malformed
    {
        ErrorCode.DOCUMENT_MALFORMED,
        ErrorCode.DOCUMENT_ENCRYPTED,
        ErrorCode.NO_TEXT_LAYER,
        ErrorCode.DOCUMENT_TOO_COMPLEX,
        ErrorCode.DOCUMENT_TYPE_MISMATCH,
        ErrorCode.UNSUPPORTED_DOCUMENT_TYPE,
        ErrorCode.DOCUMENT_EMPTY,
    }
)


@dataclass(frozen=True, slots=True)
class ParseBudget:
    time_s: float = DEFAULT_TIME_S
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    # The parser the child runs, as "module:function" (tests swap in one that stalls or hoards memory).
    parser: str = "securechat.rag.documents.parsers:parse"


def parse_in_child(media_type: str, data: bytes, filename: str, budget: ParseBudget) -> ParsedDocument:
    """The parsed document, or DocumentRefused (a parser's code, or ``document_too_complex``)."""
    return _server.parse(media_type, data, filename, budget)


class ParseServer:
    """The replica's handle on its parse server: started on first use, restarted if it has died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def parse(self, media_type: str, data: bytes, filename: str, budget: ParseBudget) -> ParsedDocument:
        header = json.dumps(
            {
                "media_type": media_type,
                "filename": filename,
                "time_s": budget.time_s,
                "memory_bytes": budget.memory_bytes,
                "parser": budget.parser,
            }
        ).encode()
        read_end, write_end = os.pipe()
        try:
            try:
                self._send(REQUEST_HEAD.pack(len(header), len(data)) + header, data, write_end)
            finally:
                os.close(write_end)  # the child holds the only other copy: EOF when it is gone
            raw = _read_until_eof(read_end, time.monotonic() + budget.time_s + _WAIT_MARGIN_S)
        finally:
            os.close(read_end)
        return decode_outcome(raw)

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()  # the server exits on EOF
                self._socket = None
            if self._process is not None:
                self._process.wait(timeout=5)
                self._process = None

    def _send(self, head: bytes, data: bytes, write_end: int) -> None:
        with self._lock:
            for attempt in range(2):
                connection = self._connected(restart=attempt > 0)
                try:
                    socket.send_fds(connection, [head], [write_end])
                    connection.sendall(data)
                    return
                except OSError:
                    if attempt:
                        raise DocumentRefused(ErrorCode.DOCUMENT_TOO_COMPLEX) from None

    def _connected(self, restart: bool) -> socket.socket:
        alive = self._process is not None and self._process.poll() is None
        if self._socket is not None and alive and not restart:
            return self._socket
        if self._socket is not None:
            self._socket.close()
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "securechat.rag.documents.parse_server", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=environment,
            )
        finally:
            theirs.close()
        self._socket = ours
        return ours


_server = ParseServer()


def _read_until_eof(fd: int, deadline: float) -> bytes:
    """Everything the child writes; past the deadline the child is killed and the document refused."""
    chunks: list[bytes] = []
    received = 0
    pid: int | None = None
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            _kill(pid)
            raise DocumentRefused(ErrorCode.DOCUMENT_TOO_COMPLEX)
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        received += len(chunk)
        if pid is None and received >= PID_HEAD.size:
            pid = PID_HEAD.unpack(b"".join(chunks)[: PID_HEAD.size])[0]
        if received > _MAX_OUTCOME_BYTES:
            _kill(pid)
            raise DocumentRefused(ErrorCode.DOCUMENT_TOO_COMPLEX)


def _kill(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(OSError):  # already gone
            os.kill(pid, signal.SIGKILL)


def encode_outcome(outcome: ParsedDocument | ErrorCode) -> bytes:
    """What the child writes after its pid: the sections, or the code it refused the document with."""
    if isinstance(outcome, ErrorCode):
        return json.dumps({"refused": outcome.value}).encode()
    sections = [[s.text, s.heading, s.page] for s in outcome.sections]
    return json.dumps({"title": outcome.title, "sections": sections}).encode()


def decode_outcome(raw: bytes) -> ParsedDocument:
    """The child's answer, checked: a child that died says nothing, one that answers garbage is refused."""
    if len(raw) <= PID_HEAD.size:
        raise DocumentRefused(ErrorCode.DOCUMENT_TOO_COMPLEX)  # out of memory or CPU time, or a crash
    try:
        outcome: Any = json.loads(raw[PID_HEAD.size :])
    except ValueError:
        raise DocumentRefused(ErrorCode.DOCUMENT_TOO_COMPLEX) from None  # cut off mid-answer
    if isinstance(outcome, dict) and set(outcome) == {"refused"}:
        code = next((c for c in _CHILD_CODES if c.value == outcome["refused"]), ErrorCode.DOCUMENT_MALFORMED)
        raise DocumentRefused(code)
    try:
        title, sections = outcome["title"], outcome["sections"]
        if not isinstance(title, str):
            raise TypeError
        return ParsedDocument(title, tuple(_section(item) for item in sections))
    except (KeyError, TypeError, ValueError):
        raise DocumentRefused(ErrorCode.DOCUMENT_MALFORMED) from None


def _section(item: Any) -> Section:
    text, heading, page = item
    if not isinstance(text, str) or not isinstance(heading, str | None) or not isinstance(page, int | None):
        raise TypeError
    return Section(text, heading, page)
