"""The embedded backend: one SQLite file, shared by the processes of one node.

WAL journaling lets readers proceed while a writer writes; ``busy_timeout`` makes a writer wait for the lock
instead of failing at once. A write transaction is ``BEGIN IMMEDIATE``: it takes the file's write lock up
front, so concurrent writers queue instead of deadlocking, and a read-modify-write needs no row locks (the
dialect's ``for_update`` is empty). The file is created 0600 (SQLite gives its -wal and -shm files the same
mode). ``PRAGMA user_version`` records the schema version: each file holds one component. A connection must
not cross ``fork``: open the database in the process that uses it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from securechat.db.base import Database, Dialect, Rows, SchemaError, Transaction

BUSY_TIMEOUT_MS: Final = 5_000
SQLITE: Final = Dialect(name="sqlite", blob="BLOB", real="REAL", int="INTEGER", for_update="")


class _SQLiteTransaction(Transaction):
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        cursor = self._connection.execute(sql, tuple(params))
        return Rows(cursor.fetchall(), cursor.rowcount)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        self._connection.executemany(sql, [tuple(p) for p in params])


class SQLiteDatabase(Database):
    dialect = SQLITE

    def __init__(self, path: Path | str, *, durable: bool = False) -> None:
        """``durable``: every commit also survives power loss (``synchronous = FULL``), not only a crash of the
        process; for data that is signed once and must never be lost (the release log)."""
        self.path = Path(os.path.expandvars(str(path))).expanduser()  # "~" and "$VARS" in a configured path
        self.location = f"sqlite:{self.path}"
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        # isolation_level=None: we issue BEGIN ourselves, so a write and its checks form one transaction.
        self._connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()  # one connection, shared by the process's threads
        try:
            self._connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._connection.execute("PRAGMA journal_mode = WAL")
            # NORMAL: durable across crashes of the process; FULL: across power loss too.
            self._connection.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._connection.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            self._connection.close()
            raise

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Transaction]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SQLiteTransaction(self._connection)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def migrate(self, component: str, steps: Sequence[Sequence[str]]) -> int:
        target = len(steps)
        with self.transaction() as tx:
            version = int(tx.execute("PRAGMA user_version").one()[0])
            if version > target:
                raise SchemaError(f"{component} database schema {version} is newer than this release ({target})")
            for step in steps[version:]:
                for statement in step:
                    tx.execute(self.dialect.ddl(statement))
            if version != target:
                tx.execute(f"PRAGMA user_version = {target}")
        return target

    def close(self) -> None:
        with self._lock:
            self._connection.close()
