"""The parse server a replica starts (``sandbox.ParseServer``): it forks one budgeted child per document.

Run as ``python -m securechat.rag.documents.parse_server FD`` with FD one end of a socket pair the replica
holds the other end of. Each request is a fixed head (header and data lengths) carrying the write end of the
replica's pipe as an SCM_RIGHTS file descriptor, then a JSON header (media type, filename, budget, parser) and
the document's bytes. The server is single-threaded, so forking it is safe; it ignores SIGCHLD, so the kernel
reaps its children, and it exits when the replica closes the socket (the replica has gone or shut it down).
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import signal
import socket
import sys
from typing import Any

from securechat.errors import ErrorCode
from securechat.rag.documents.model import DocumentRefused, ParsedDocument
from securechat.rag.documents.sandbox import PID_HEAD, REQUEST_HEAD, ParseBudget, encode_outcome


def main(argv: list[str]) -> int:
    connection = socket.socket(fileno=int(argv[1]))
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    _parser(ParseBudget().parser)  # imported once here, so every child starts with the parsers loaded
    while (request := _receive(connection)) is not None:
        header, data, write_end = request
        if os.fork() == 0:
            try:
                connection.close()
                _child(header, data, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
    return 0


def _receive(connection: socket.socket) -> tuple[dict[str, Any], bytes, int] | None:
    """The next request, or None once the replica has closed its end."""
    head, fds, _, _ = socket.recv_fds(connection, REQUEST_HEAD.size, 1)
    if not head:
        return None
    if len(fds) != 1:
        raise SystemExit("parse request without its pipe")
    head += _exactly(connection, REQUEST_HEAD.size - len(head))
    header_length, data_length = REQUEST_HEAD.unpack(head)
    header = json.loads(_exactly(connection, header_length))
    return header, _exactly(connection, data_length), fds[0]


def _exactly(connection: socket.socket, size: int) -> bytes:
    parts, received = [], 0
    while received < size:
        part = connection.recv(min(size - received, 1 << 20))
        if not part:
            raise SystemExit("the replica closed the socket mid-request")
        parts.append(part)
        received += len(part)
    return b"".join(parts)


def _child(header: dict[str, Any], data: bytes, write_end: int) -> None:
    with os.fdopen(write_end, "wb") as out:
        out.write(PID_HEAD.pack(os.getpid()))  # first, so the replica can kill a child that blocks
        out.flush()
        _limit(float(header["time_s"]), int(header["memory_bytes"]))
        out.write(encode_outcome(_parse(header, data)))


def _parse(header: dict[str, Any], data: bytes) -> ParsedDocument | ErrorCode:
    try:
        parse = _parser(str(header["parser"]))
        document: ParsedDocument = parse(str(header["media_type"]), data, str(header["filename"]))
        return document
    except DocumentRefused as refused:
        return refused.code
    except MemoryError:
        return ErrorCode.DOCUMENT_TOO_COMPLEX
    except UnicodeDecodeError:
        return ErrorCode.UNSUPPORTED_DOCUMENT_TYPE
    except Exception:  # a parser's bug on a hostile file: refused, never a traceback with its content
        return ErrorCode.DOCUMENT_MALFORMED


def _parser(name: str) -> Any:
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def _limit(time_s: float, memory_bytes: int) -> None:
    """CPU seconds (SIGXCPU past them) and address space above what the child started with (MemoryError)."""
    cpu_s = max(1, int(time_s))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    limit = _address_space_bytes() + memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[0])
        return pages * resource.getpagesize()
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
