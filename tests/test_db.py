"""Both database backends: versioned schemas, all-or-nothing transactions, and PostgreSQL's failure modes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.db import Database, DatabaseSettings, DatabaseUnavailable, SchemaError, open_database
from securechat.db.postgres import PostgresDatabase, describe_url
from securechat.db.sqlite import SQLiteDatabase
from tests.postgres_harness import PostgresServer

STEPS = (
    ("CREATE TABLE items (item_id TEXT PRIMARY KEY, body {blob} NOT NULL, score {real} NOT NULL, n {int})",),
    ("ALTER TABLE items ADD COLUMN note TEXT",),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        opened: Database = SQLiteDatabase(tmp_path / "db.sqlite3")
    else:
        opened = PostgresDatabase(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


def test_migrations_run_once_and_newer_schemas_are_refused(database: Database) -> None:
    assert database.migrate("items", STEPS[:1]) == 1
    assert database.migrate("items", STEPS) == 2  # only the second step runs
    assert database.migrate("items", STEPS) == 2
    with database.transaction() as tx:
        tx.execute(
            "INSERT INTO items (item_id, body, score, n, note) VALUES (?, ?, ?, ?, ?)", ("a", b"\x00", 0.5, 7, "x")
        )
    with pytest.raises(SchemaError):
        database.migrate("items", STEPS[:1])  # this release knows version 1, the database is at 2


def test_types_round_trip(database: Database) -> None:
    database.migrate("items", STEPS)
    blob = bytes(range(256))
    with database.transaction() as tx:
        tx.executemany(
            "INSERT INTO items (item_id, body, score, n) VALUES (?, ?, ?, ?)",
            [("a", blob, 1.25, 2**40), ("b", b"", -3.0, None)],
        )
    with database.transaction(write=False) as tx:
        rows = tx.execute("SELECT item_id, body, score, n FROM items ORDER BY item_id").rows
        (total,) = tx.execute("SELECT COUNT(*) FROM items").one()
    assert [tuple(r) for r in rows] == [("a", blob, 1.25, 2**40), ("b", b"", -3.0, None)]
    assert int(total) == 2


def test_a_failed_transaction_keeps_nothing(database: Database) -> None:
    database.migrate("items", STEPS)
    with pytest.raises(RuntimeError), database.transaction() as tx:
        tx.execute("INSERT INTO items (item_id, body, score) VALUES (?, ?, ?)", ("a", b"1", 1.0))
        raise RuntimeError("fails half-way")
    with database.transaction() as tx:
        assert tx.execute("SELECT COUNT(*) FROM items").one()[0] == 0
        assert tx.execute("UPDATE items SET score = 2 WHERE item_id = ?", ("a",)).rowcount == 0


def test_sqlite_files_are_private_and_versioned_in_user_version(tmp_path: Path) -> None:
    with SQLiteDatabase(tmp_path / "sub" / "db.sqlite3") as database:
        database.migrate("items", STEPS)
    path = tmp_path / "sub" / "db.sqlite3"
    assert path.stat().st_mode & 0o777 == 0o600
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_open_database_picks_the_backend(tmp_path: Path, postgres_url: str) -> None:
    with open_database(DatabaseSettings(), tmp_path / "x.sqlite3") as embedded:
        assert embedded.dialect.name == "sqlite"
    with open_database(DatabaseSettings(url=postgres_url), tmp_path / "unused.sqlite3") as shared:
        assert shared.dialect.name == "postgresql"
    assert not (tmp_path / "unused.sqlite3").exists()


def test_settings_refuse_other_urls_and_never_show_the_url() -> None:
    with pytest.raises(ValueError, match="postgresql://"):
        DatabaseSettings(url="mysql://db/x")
    settings = DatabaseSettings(url="postgresql://sc:hunter2@db:5432/securechat")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert describe_url("postgresql://sc:hunter2@db:5432/securechat") == "postgresql://sc@db:5432/securechat"


def test_a_server_that_is_down_fails_the_open_with_a_clear_message() -> None:
    server = PostgresServer()  # initialised, never started: nothing listens on its port
    try:
        url = server.url().replace("postgres@", "postgres:hunter2@")
        with pytest.raises(DatabaseUnavailable) as refused:
            PostgresDatabase(url, connect_timeout_s=1)
        message = str(refused.value)
        assert f"127.0.0.1:{server.port}" in message and "refused" in message.lower()
        assert "hunter2" not in message
    finally:
        server.close()


def test_a_lost_server_is_unavailable_then_recovers_and_keeps_nothing_half_written() -> None:
    server = PostgresServer()
    server.start()
    try:
        database = PostgresDatabase(server.url(), acquire_timeout_s=0.5, connect_timeout_s=2)
        database.migrate("items", STEPS)
        server.stop()
        with pytest.raises(DatabaseUnavailable), database.transaction() as tx:
            tx.execute("INSERT INTO items (item_id, body, score) VALUES (?, ?, ?)", ("lost", b"1", 1.0))
        server.start()
        # Killed inside a transaction: the server rolls it back, the pool drops the broken connection.
        with pytest.raises(DatabaseUnavailable), database.transaction() as tx:
            tx.execute("INSERT INTO items (item_id, body, score) VALUES (?, ?, ?)", ("half", b"1", 1.0))
            tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        recovered = _eventually(database)
        assert recovered == []  # neither write was kept
        database.close()
    finally:
        server.close()


def _eventually(database: Database, attempts: int = 20) -> list[tuple[object, ...]]:
    for _ in range(attempts):
        try:
            with database.transaction() as tx:
                return tx.execute("SELECT item_id FROM items").rows
        except DatabaseUnavailable:
            continue
    raise AssertionError("the database did not come back")
