"""``database:`` in the app config: one PostgreSQL URL for every store, or nothing for the embedded files.

Unset (the default), each store keeps an SQLite file on the node that runs it: right for one machine, wrong for
a cluster (a key added on one node would be unknown on another). Set, the tenant store (API keys, policies,
rate limits) and the document store share one PostgreSQL database, reached from every node. ``${VAR}`` in the
URL expands from the environment, and libpq's own PGPASSWORD / PGPASSFILE work too, so the password need not
be in the config file. The URL is left out of ``repr`` and of every message (they show host, port, database).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from securechat.db.base import Database

_SCHEMES = ("postgresql://", "postgres://")


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(default=None, repr=False)  # postgresql://user@host:5432/dbname; None: SQLite files
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)  # at start-up: then the start fails
    acquire_timeout_s: float = Field(default=2.0, gt=0, le=60)  # per request: then 503 database_unavailable
    statement_timeout_s: float = Field(default=10.0, gt=0, le=600)
    max_connections: int = Field(default=4, ge=1, le=100)  # per process (each gateway and store replica)

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_SCHEMES):
            raise ValueError("database.url must be a postgresql:// URL (leave it unset for the SQLite files)")
        return value

    @property
    def shared(self) -> bool:
        """True when state lives in a server every node reaches."""
        return self.url is not None


def open_database(settings: DatabaseSettings, sqlite_path: Path | str) -> Database:
    """PostgreSQL when ``settings.url`` is set, else the SQLite file at ``sqlite_path``."""
    if settings.url is None:
        from securechat.db.sqlite import SQLiteDatabase

        return SQLiteDatabase(sqlite_path)
    from securechat.db.postgres import PostgresDatabase  # psycopg is imported only where PostgreSQL is used

    return PostgresDatabase(
        settings.url,
        connect_timeout_s=settings.connect_timeout_s,
        acquire_timeout_s=settings.acquire_timeout_s,
        statement_timeout_s=settings.statement_timeout_s,
        max_connections=settings.max_connections,
    )
