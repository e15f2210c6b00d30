"""The SQLite file behind the log store and the witness state: ``securechat.db``'s SQLite backend, durable
through power loss, and marked with what it holds so that one kind is never opened as the other.

WAL lets readers (the gateway serving proofs) run while an operator's CLI appends; a write transaction takes
the file's lock before reading, so read-check-write sequences (the next leaf index, a witness's latest
checkpoint) are atomic across processes; a file from a newer release is refused (``SchemaError``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from securechat.db import SchemaError
from securechat.db.sqlite import SQLiteDatabase


def open_sqlite(path: Path, schema: Sequence[str], kind: str) -> SQLiteDatabase:
    """The database at ``path`` (created 0600 with ``schema`` and a ``meta`` row naming ``kind`` if new)."""
    database = SQLiteDatabase(path, durable=True)
    try:
        database.migrate(kind, [(*schema, f"INSERT INTO meta (name, value) VALUES ('kind', '{kind}')")])
        with database.transaction(write=False) as tx:
            row = tx.execute("SELECT value FROM meta WHERE name = 'kind'").first()
        if row is None or row[0] != kind:
            raise SchemaError(f"not a {kind} database")
    except BaseException:
        database.close()
        raise
    return database
