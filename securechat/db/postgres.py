"""The cluster backend: a PostgreSQL server that every gateway and store replica on every node reaches.

Connections come from a small pool per process (psycopg 3 and psycopg_pool); each is checked before it is
handed out, so connections broken by a server restart are replaced instead of failing a request. Opening the
database connects once first, so a server that is down, unreachable or refusing our credentials stops the
caller's start with a message that says which (never the password). While serving, a request waits at most
``acquire_timeout_s`` for a connection; a lost server, or one lost inside a transaction (which PostgreSQL then
rolls back whole), raises ``DatabaseUnavailable``. Row locks (``SELECT ... FOR UPDATE``) order read-modify-writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Final

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg_pool import ConnectionPool

from securechat.db.base import Database, DatabaseUnavailable, Dialect, Rows, SchemaError, Transaction

POSTGRES: Final = Dialect(
    name="postgresql", blob="BYTEA", real="DOUBLE PRECISION", int="BIGINT", for_update=" FOR UPDATE"
)
# One key for every component's migration: replicas starting together create the tables once, in turn.
_MIGRATION_LOCK: Final = 0x5EC0_C4A7
_DRIVER_ERRORS: Final = (psycopg.OperationalError, psycopg.InterfaceError)


@lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    """Stores write ``?`` (SQLite's style); psycopg wants ``%s``. Our statements hold no other ``?`` or ``%``."""
    return sql.replace("?", "%s")


def describe_url(url: str) -> str:
    """``postgresql://user@host:port/dbname``: where a URL points, without its password."""
    try:
        parts = pg_conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<unparsable url>"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


class _PostgresTransaction(Transaction):
    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        cursor = self._connection.execute(_placeholders(sql), tuple(params))
        rows = cursor.fetchall() if cursor.description is not None else []
        return Rows(rows, cursor.rowcount)

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(_placeholders(sql), [tuple(p) for p in params])


class PostgresDatabase(Database):
    dialect = POSTGRES

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        acquire_timeout_s: float = 2.0,
        statement_timeout_s: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        conninfo = os.path.expandvars(url)  # "${VAR}" keeps a password out of the config file
        self.location = describe_url(conninfo)
        password = pg_conninfo.conninfo_to_dict(conninfo).get("password")
        self._password = str(password) if password else None
        options = {
            "autocommit": True,  # transactions are explicit (conn.transaction())
            "connect_timeout": max(1, round(connect_timeout_s)),
            "options": f"-c statement_timeout={round(statement_timeout_s * 1000)}",
            "application_name": "securechat",
        }
        self._probe(conninfo, options)
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_connections,
            kwargs=options,
            check=ConnectionPool.check_connection,
            timeout=acquire_timeout_s,
            open=False,
            name="securechat",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except _DRIVER_ERRORS as error:
            self._pool.close()
            raise self._unavailable("cannot open a connection pool to", error) from None

    def _probe(self, conninfo: str, options: dict[str, Any]) -> None:
        """One direct connection first: the driver's reason (refused, unknown host, authentication) is kept."""
        try:
            psycopg.connect(conninfo, **options).close()
        except _DRIVER_ERRORS as error:
            raise self._unavailable("cannot connect to", error) from None

    def _unavailable(self, what: str, error: BaseException) -> DatabaseUnavailable:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if self._password:
            reason = reason.replace(self._password, "<password>")
        return DatabaseUnavailable(f"{what} the database at {self.location}: {reason}")

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Transaction]:
        try:
            with self._pool.connection() as connection, connection.transaction():
                yield _PostgresTransaction(connection)
        except _DRIVER_ERRORS as error:  # the server went away: PostgreSQL rolled the transaction back
            raise self._unavailable("lost", error) from None

    def migrate(self, component: str, steps: Sequence[Sequence[str]]) -> int:
        target = len(steps)
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            tx.execute("CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER)")
            row = tx.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).first()
            version = 0 if row is None else int(row[0])
            if version > target:
                raise SchemaError(f"{component} database schema {version} is newer than this release ({target})")
            for step in steps[version:]:
                for statement in step:
                    tx.execute(self.dialect.ddl(statement))
            if version != target:
                tx.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                    " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    (component, target),
                )
        return target

    def close(self) -> None:
        self._pool.close()
