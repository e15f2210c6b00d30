"""Where shared state lives: an embedded SQLite file (one node) or a PostgreSQL server (a cluster).

``Database`` is the contract the tenant store and the document store are written against: transactions of
plain SQL with ``?`` placeholders and a few dialect words. ``open_database`` picks the backend from
``DatabaseSettings``. Nothing here knows what the tables hold; callers never pass plaintext.
"""

from securechat.db.base import Database, DatabaseUnavailable, Dialect, Rows, SchemaError, Transaction
from securechat.db.settings import DatabaseSettings, open_database

__all__ = [
    "Database",
    "DatabaseSettings",
    "DatabaseUnavailable",
    "Dialect",
    "Rows",
    "SchemaError",
    "Transaction",
    "open_database",
]
