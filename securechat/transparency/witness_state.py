"""A witness's own state: its name, the logs it watches (their verifier keys), and per log the latest
checkpoint it cosigned. Kept apart from the log's store on purpose: a witness that read the log's database
would see whatever the log wants it to see.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from securechat.transparency._db import open_sqlite
from securechat.transparency.checkpoint import Checkpoint
from securechat.transparency.note_keys import NoteVerifier, SignatureType

_SCHEMA_V1: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE logs (origin TEXT PRIMARY KEY, vkey TEXT NOT NULL)",
    """
    CREATE TABLE cosigned (
        origin TEXT PRIMARY KEY,
        tree_size INTEGER NOT NULL,
        root_hash BLOB NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
)


class WitnessState(ABC):
    """Persistence for one witness. ``advance`` must be atomic: the check of the latest checkpoint and the
    write of the new one happen under one lock, or two racing requests could roll the witness back
    (the race c2sp.org/tlog-witness describes)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The witness's key name (it signs cosignatures under it)."""

    @abstractmethod
    def trusted_logs(self) -> Mapping[str, NoteVerifier]:
        """Origin -> the log's checkpoint key."""

    @abstractmethod
    def latest(self, origin: str) -> Checkpoint | None: ...

    @abstractmethod
    def advance(self, new: Checkpoint, check: Callable[[Checkpoint | None], None]) -> None:
        """Atomically: call ``check(latest for new.origin)``; if it returns, record ``new`` as the latest."""


class SqliteWitnessState(WitnessState):
    def __init__(self, path: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"no witness state at {self.path}; create it with `securechat log witness init`")
        self._db = open_sqlite(self.path, _SCHEMA_V1, "transparency-witness")
        self._clock = clock
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT value FROM meta WHERE name = 'witness_name'").first()
        if row is None:
            self._db.close()
            raise FileNotFoundError(f"{self.path} has no witness name; run `securechat log witness init`")
        self._name: str = row[0]

    @classmethod
    def create(cls, path: Path | str, name: str, *, clock: Callable[[], float] = time.time) -> SqliteWitnessState:
        target = Path(path).expanduser()
        if target.exists():
            raise FileExistsError(f"{target} exists; a witness's state is created once")
        database = open_sqlite(target, _SCHEMA_V1, "transparency-witness")
        try:
            with database.transaction() as tx:
                tx.execute("INSERT INTO meta (name, value) VALUES ('witness_name', ?)", (name,))
        finally:
            database.close()
        return cls(target, clock=clock)

    def close(self) -> None:
        self._db.close()

    @property
    def name(self) -> str:
        return self._name

    def trust_log(self, log_key: NoteVerifier) -> None:
        """Watch the log whose origin is the key's name. Its key cannot be swapped later: a witness that
        followed a key change on request would cosign a different log under the same origin."""
        if log_key.signature_type is not SignatureType.ED25519:
            raise ValueError("a log key signs plain Ed25519 checkpoints (type 0x01)")
        with self._db.transaction() as tx:
            row = tx.execute("SELECT vkey FROM logs WHERE origin = ?", (log_key.name,)).first()
            if row is not None and row[0] != log_key.to_vkey():
                raise ValueError("this witness already trusts another key for that origin")
            if row is None:
                tx.execute("INSERT INTO logs (origin, vkey) VALUES (?, ?)", (log_key.name, log_key.to_vkey()))

    def trusted_logs(self) -> Mapping[str, NoteVerifier]:
        with self._db.transaction(write=False) as tx:
            rows = tx.execute("SELECT origin, vkey FROM logs").rows
        return {str(origin): NoteVerifier.from_vkey(str(vkey)) for origin, vkey in rows}

    def latest(self, origin: str) -> Checkpoint | None:
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT tree_size, root_hash FROM cosigned WHERE origin = ?", (origin,)).first()
        return None if row is None else Checkpoint(origin, int(row[0]), bytes(row[1]))

    def advance(self, new: Checkpoint, check: Callable[[Checkpoint | None], None]) -> None:
        with self._db.transaction() as tx:
            row = tx.execute("SELECT tree_size, root_hash FROM cosigned WHERE origin = ?", (new.origin,)).first()
            check(None if row is None else Checkpoint(new.origin, int(row[0]), bytes(row[1])))
            tx.execute(
                "INSERT INTO cosigned (origin, tree_size, root_hash, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (origin) DO UPDATE SET tree_size = excluded.tree_size, "
                "root_hash = excluded.root_hash, updated_at = excluded.updated_at",
                (new.origin, new.size, new.root_hash, self._clock()),
            )
