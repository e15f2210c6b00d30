"""Small local state files the client keeps (the keyring, the release log's last-seen checkpoints).

Two habits for each: every read-modify-write holds an exclusive ``flock`` on a lock file beside it, so the SDK,
CLI and proxy processes of one user (and a proxy's threads) never lose each other's updates; and every write is
durable and atomic: a new 0600 file is written, fsynced, renamed over the old one, and the directory fsynced,
so a crash leaves the old file or the new one, never an empty or half-written one.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HELD = threading.local()  # the lock files this thread holds, with their depth (the lock is reentrant)
_THREAD_LOCKS: dict[Path, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def lock_path_for(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``path`` (its ``.lock`` file; created 0600, directory 0700 if new).

    ``flock`` excludes other processes; a per-path thread lock the other threads of this process. Reentrant in
    one thread: a nested ``locked`` of the same path just goes on (a second flock would wait on the first).
    """
    lock_file = lock_path_for(path.expanduser().absolute())
    held: dict[Path, int] = _HELD.__dict__.setdefault("depth", {})
    if held.get(lock_file):
        held[lock_file] += 1
        try:
            yield
        finally:
            held[lock_file] -= 1
        return
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(lock_file, threading.Lock())
    with thread_lock:
        lock_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        held[lock_file] = 1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            held.pop(lock_file, None)
            os.close(fd)  # closing drops the flock


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, durably: fsync the new file before the rename and the directory after."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600 from birth
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
