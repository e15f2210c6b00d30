"""SQLite plumbing shared by the log store and the witness state: WAL, 0600 files, one write lock.

The same choices as the tenant database (``securechat.tenants.db``), for the same reasons: WAL lets readers
(the gateway serving proofs) run while an operator's CLI appends; ``busy_timeout`` makes a second writer wait
instead of failing; ``BEGIN IMMEDIATE`` takes the write lock before reading, so read-check-write sequences (the
next leaf index, a witness's latest checkpoint) are atomic across processes. The schema is created inside such
a transaction and versioned with ``PRAGMA user_version``; a file from a newer release is refused.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

BUSY_TIMEOUT_MS: Final = 5_000


class SchemaError(RuntimeError):
    """The database was written by a newer release, or is some other kind of database."""


class Database:
    """One autocommit connection, shared under a lock so a store may be used from several threads."""

    def __init__(self, path: Path, schema: Sequence[str], version: int, kind: str) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite's -wal/-shm files copy this mode
        self.lock = threading.Lock()
        # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), not the sqlite3 module's guesses.
        self.connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            self.connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.connection.execute("PRAGMA journal_mode = WAL")
            self.connection.execute("PRAGMA synchronous = FULL")  # a signed checkpoint must survive power loss
            self._migrate(schema, version, kind)
        except BaseException:
            self.connection.close()
            raise

    def close(self) -> None:
        with self.lock:
            self.connection.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
            except BaseException:
                self.connection.execute("ROLLBACK")
                raise
            self.connection.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        # One deferred transaction, so a multi-statement read sees a single snapshot of the file.
        with self.lock:
            self.connection.execute("BEGIN")
            try:
                yield self.connection
            finally:
                self.connection.execute("COMMIT")

    def _migrate(self, schema: Sequence[str], version: int, kind: str) -> None:
        with self.write() as connection:
            current = connection.execute("PRAGMA user_version").fetchone()[0]
            if current == 0:
                for statement in schema:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version}")
                connection.execute("INSERT INTO meta (name, value) VALUES ('kind', ?)", (kind,))
                return
            if current > version:
                raise SchemaError(f"{kind} database schema {current} is newer than this release ({version})")
            row = connection.execute("SELECT value FROM meta WHERE name = 'kind'").fetchone()
            if row is None or row[0] != kind:
                raise SchemaError(f"not a {kind} database")
