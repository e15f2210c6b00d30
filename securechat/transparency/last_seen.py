"""The newest checkpoint a client has accepted from each log: the memory that turns a split view or a rewrite
of history into something a single client can detect on its own.

``FileLastSeen`` keeps it in a small JSON file (``securechat.state_files``: 0600, written atomically and durably,
under an ``flock``) so SDK, CLI and proxy processes of one user share one view and never move it backwards.
"""

from __future__ import annotations

import base64
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Final

from securechat import state_files
from securechat.attestation._canonical import exact_keys, read_int
from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.note import MAX_NOTE_BYTES, InvalidNote, strict_b64decode

STATE_VERSION: Final = 1
MAX_STATE_BYTES: Final = 4 * 1024 * 1024
_ENTRY_FIELDS: Final = frozenset({"size", "root_hash", "checkpoint"})


class LastSeenCorrupt(RuntimeError):
    """The local state file does not parse; refusing beats silently forgetting what was seen."""


class LastSeenStore(ABC):
    """Callers hold ``locked()`` around a ``get`` ... ``put`` sequence, so two checks cannot interleave."""

    @abstractmethod
    def locked(self) -> AbstractContextManager[None]: ...

    @abstractmethod
    def get(self, origin: str) -> Checkpoint | None: ...

    @abstractmethod
    def put(self, checkpoint: Checkpoint, note: str) -> None:
        """Record ``checkpoint`` (and the signed note it came in, as evidence) as the newest seen."""


class MemoryLastSeen(LastSeenStore):
    """For one process (tests, a long-running proxy that keeps state elsewhere)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._seen: dict[str, tuple[Checkpoint, str]] = {}

    def locked(self) -> AbstractContextManager[None]:
        return _hold(self._lock)

    def get(self, origin: str) -> Checkpoint | None:
        entry = self._seen.get(origin)
        return None if entry is None else entry[0]

    def put(self, checkpoint: Checkpoint, note: str) -> None:
        self._seen[checkpoint.origin] = (checkpoint, note)


class FileLastSeen(LastSeenStore):
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()

    def locked(self) -> AbstractContextManager[None]:
        return state_files.locked(self.path)

    def get(self, origin: str) -> Checkpoint | None:
        entry = self._read().get(origin)
        return None if entry is None else _parse_entry(origin, entry)

    def put(self, checkpoint: Checkpoint, note: str) -> None:
        logs = dict(self._read())
        logs[checkpoint.origin] = {
            "size": checkpoint.size,
            "root_hash": base64.b64encode(checkpoint.root_hash).decode(),
            "checkpoint": note,
        }
        data = json.dumps({"version": STATE_VERSION, "logs": logs}, sort_keys=True, indent=1).encode()
        state_files.write_atomically(self.path, data)

    def _read(self) -> Mapping[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            if len(raw) > MAX_STATE_BYTES:
                raise ValueError("state file too large")
            parsed = exact_keys(json.loads(raw), frozenset({"version", "logs"}))
            if read_int(parsed["version"]) != STATE_VERSION or not isinstance(parsed["logs"], dict):
                raise ValueError("unsupported state file")
            for origin, entry in parsed["logs"].items():
                _parse_entry(origin, entry)
        except (ValueError, InvalidNote, UnicodeDecodeError):
            raise LastSeenCorrupt(f"cannot read {self.path}; move it aside only if you know why it broke") from None
        logs: Mapping[str, Any] = parsed["logs"]
        return logs


def _parse_entry(origin: str, entry: object) -> Checkpoint:
    fields = exact_keys(entry, _ENTRY_FIELDS)
    note = fields["checkpoint"]
    if not isinstance(note, str) or len(note) > MAX_NOTE_BYTES or not isinstance(fields["root_hash"], str):
        raise ValueError("invalid state entry")
    return Checkpoint(origin, read_int(fields["size"]), strict_b64decode(fields["root_hash"]))


@contextmanager
def _hold(lock: threading.RLock) -> Iterator[None]:
    with lock:
        yield
