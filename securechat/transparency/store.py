"""Where the log keeps its leaves and its signed checkpoints: a small contract and its SQLite implementation.

Leaves are append-only twice over: the API has no way to change one, and triggers in the database abort any
UPDATE or DELETE on the leaves table, so a stray ``sqlite3`` session cannot rewrite history by accident.
(Someone who drops the triggers can; ``ReleaseLog`` then refuses to sign a checkpoint that is inconsistent with
the last one it signed, and witnesses and clients refuse it too.)
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from securechat.db import Transaction
from securechat.transparency._db import open_sqlite

_SCHEMA_V1: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """
    CREATE TABLE leaves (
        leaf_index INTEGER PRIMARY KEY,
        leaf_hash BLOB NOT NULL UNIQUE,
        data BLOB NOT NULL,
        appended_at REAL NOT NULL
    )
    """,
    """
    CREATE TRIGGER leaves_no_update BEFORE UPDATE ON leaves
    BEGIN SELECT RAISE(ABORT, 'log leaves are append-only'); END
    """,
    """
    CREATE TRIGGER leaves_no_delete BEFORE DELETE ON leaves
    BEGIN SELECT RAISE(ABORT, 'log leaves are append-only'); END
    """,
    """
    CREATE TABLE checkpoints (
        tree_size INTEGER PRIMARY KEY,
        root_hash BLOB NOT NULL,
        note TEXT NOT NULL,
        signed_at REAL NOT NULL
    )
    """,
)


class DuplicateEntry(ValueError):
    """The leaf is already in the log; ``index`` says where."""

    def __init__(self, index: int) -> None:
        self.index = index
        super().__init__(f"already in the log at index {index}")


class ConflictingCheckpoint(RuntimeError):
    """A checkpoint for this tree size with a different root hash is already stored."""


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root_hash: bytes
    note: str  # the signed note, with every cosignature collected so far


class LogStore(ABC):
    """Persistence for one log. Implementations must make ``append`` atomic: concurrent appends from several
    threads or processes get distinct, consecutive indices and never lose a leaf."""

    @property
    @abstractmethod
    def origin(self) -> str:
        """The log's origin line, fixed when the store was created."""

    @abstractmethod
    def size(self) -> int:
        """Number of leaves."""

    @abstractmethod
    def append(self, leaf_hash: bytes, data: bytes) -> int:
        """Add a leaf at the next index and return it; ``DuplicateEntry`` if ``leaf_hash`` is present."""

    @abstractmethod
    def index_of(self, leaf_hash: bytes) -> int | None: ...

    @abstractmethod
    def leaf_hashes(self, size: int) -> list[bytes]:
        """The hashes of leaves ``0..size-1``; ValueError if the log is smaller."""

    @abstractmethod
    def entries(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        """``(leaf_hash, data)`` of leaves ``start..end-1`` (fewer if the log ends sooner)."""

    @abstractmethod
    def latest_checkpoint(self) -> StoredCheckpoint | None: ...

    @abstractmethod
    def checkpoint_at(self, size: int) -> StoredCheckpoint | None: ...

    @abstractmethod
    def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        """Record a newly signed checkpoint; ``ConflictingCheckpoint`` if its size is stored with another root."""

    @abstractmethod
    def replace_note(self, size: int, old_note: str, new_note: str) -> bool:
        """Swap the stored note of checkpoint ``size`` (to add cosignatures) if it is still ``old_note``."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op for stores without resources
        """Release resources."""


class SqliteLogStore(LogStore):
    """A log in one SQLite file (WAL, 0600). Open an existing log with the constructor, make one with
    ``create``: the gateway should fail on a wrong path rather than serve a fresh, empty log."""

    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"no transparency log at {self.path}; create it with `securechat log init`")
        self._db = open_sqlite(self.path, _SCHEMA_V1, "transparency-log")
        self._clock = clock
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT value FROM meta WHERE name = 'origin'").first()
        if row is None:
            self._db.close()
            raise FileNotFoundError(f"{self.path} has no log origin; create it with `securechat log init`")
        self._origin: str = row[0]

    @classmethod
    def create(cls, path: Path | str, origin: str, *, clock: Callable[[], float] = time.time) -> SqliteLogStore:
        target = Path(path).expanduser()
        if target.exists():
            raise FileExistsError(f"{target} exists; a log is created once")
        database = open_sqlite(target, _SCHEMA_V1, "transparency-log")
        try:
            with database.transaction() as tx:
                tx.execute("INSERT INTO meta (name, value) VALUES ('origin', ?)", (origin,))
        finally:
            database.close()
        return cls(target, clock=clock)

    @property
    def origin(self) -> str:
        return self._origin

    def close(self) -> None:
        self._db.close()

    def size(self) -> int:
        with self._db.transaction(write=False) as tx:
            return _next_index(tx)

    def append(self, leaf_hash: bytes, data: bytes) -> int:
        with self._db.transaction() as tx:
            existing = tx.execute("SELECT leaf_index FROM leaves WHERE leaf_hash = ?", (leaf_hash,)).first()
            if existing is not None:
                raise DuplicateEntry(int(existing[0]))
            index = _next_index(tx)
            tx.execute(
                "INSERT INTO leaves (leaf_index, leaf_hash, data, appended_at) VALUES (?, ?, ?, ?)",
                (index, leaf_hash, data, self._clock()),
            )
        return index

    def index_of(self, leaf_hash: bytes) -> int | None:
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT leaf_index FROM leaves WHERE leaf_hash = ?", (leaf_hash,)).first()
        return None if row is None else int(row[0])

    def leaf_hashes(self, size: int) -> list[bytes]:
        with self._db.transaction(write=False) as tx:
            rows = tx.execute("SELECT leaf_hash FROM leaves WHERE leaf_index < ? ORDER BY leaf_index", (size,)).rows
        if len(rows) != size:
            raise ValueError("the log has fewer leaves than asked for")
        return [bytes(row[0]) for row in rows]

    def entries(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        with self._db.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT leaf_hash, data FROM leaves WHERE leaf_index >= ? AND leaf_index < ? ORDER BY leaf_index",
                (start, end),
            ).rows
        return [(bytes(row[0]), bytes(row[1])) for row in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self._db.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT tree_size, root_hash, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
            ).first()
        return None if row is None else StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]))

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT tree_size, root_hash, note FROM checkpoints WHERE tree_size = ?", (size,)).first()
        return None if row is None else StoredCheckpoint(int(row[0]), bytes(row[1]), str(row[2]))

    def save_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        with self._db.transaction() as tx:
            row = tx.execute("SELECT root_hash FROM checkpoints WHERE tree_size = ?", (checkpoint.size,)).first()
            if row is not None:
                if bytes(row[0]) != checkpoint.root_hash:
                    raise ConflictingCheckpoint("a checkpoint of this size with another root is stored")
                return  # already stored (with whatever cosignatures it has gathered)
            tx.execute(
                "INSERT INTO checkpoints (tree_size, root_hash, note, signed_at) VALUES (?, ?, ?, ?)",
                (checkpoint.size, checkpoint.root_hash, checkpoint.note, self._clock()),
            )

    def replace_note(self, size: int, old_note: str, new_note: str) -> bool:
        with self._db.transaction() as tx:
            updated = tx.execute(
                "UPDATE checkpoints SET note = ? WHERE tree_size = ? AND note = ?", (new_note, size, old_note)
            )
            return updated.rowcount == 1


def _next_index(tx: Transaction) -> int:
    # MAX over the INTEGER PRIMARY KEY is a b-tree lookup; COUNT(*) would scan the table.
    return int(tx.execute("SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM leaves").one()[0])
