"""The tenant database: one SQLite file shared by every gateway process on a host.

WAL journaling lets readers (the request path) proceed while a CLI process writes; ``busy_timeout`` makes a
writer wait for the lock instead of failing at once. The schema is created on open inside ``BEGIN IMMEDIATE``,
so two processes opening a new file together cannot both create it; ``PRAGMA user_version`` records the schema
version, and a file from a newer release is refused rather than misread. The file is created 0600 (SQLite gives
its -wal and -shm files the same mode): it holds digests and policies, no secrets, but nobody else needs it.
A connection must not cross ``fork``: open the store in the process that uses it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Final

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_MS: Final = 5_000

_SCHEMA_V1: Final = (
    """
    CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        digest BLOB NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    )
    """,
    "CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id)",
    """
    CREATE TABLE tenant_policies (
        tenant_id TEXT PRIMARY KEY,
        overrides TEXT NOT NULL,
        updated_at REAL NOT NULL
    )
    """,
)


class SchemaError(RuntimeError):
    """The database was written by a newer release (or is not a tenant database)."""


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection in WAL mode with the schema in place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    # isolation_level=None: we issue BEGIN ourselves, so a write and its checks form one transaction.
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
    try:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")  # durable across crashes of the process in WAL mode
        connection.execute("PRAGMA foreign_keys = ON")
        _migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaError(f"tenant database schema {version} is newer than this release ({SCHEMA_VERSION})")
        if version == 0:
            for statement in _SCHEMA_V1:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
