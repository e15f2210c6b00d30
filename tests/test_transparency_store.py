"""The SQLite log store: 0600 file, append-only leaves, atomic appends from many connections at once."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from securechat.db import SchemaError
from securechat.transparency import DuplicateEntry, SqliteLogStore, SqliteWitnessState
from securechat.transparency.merkle import leaf_hash
from securechat.transparency.store import ConflictingCheckpoint, StoredCheckpoint


def _leaf(number: int) -> tuple[bytes, bytes]:
    data = f"entry {number}".encode()
    return leaf_hash(data), data


def test_create_open_and_file_modes(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "log.sqlite3"
    with pytest.raises(FileNotFoundError):
        SqliteLogStore(path)
    store = SqliteLogStore.create(path, "example.org/log")
    store.append(*_leaf(0))
    store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with pytest.raises(FileExistsError):
        SqliteLogStore.create(path, "example.org/other")
    reopened = SqliteLogStore(path)
    assert (reopened.origin, reopened.size()) == ("example.org/log", 1)
    reopened.close()


def test_a_witness_database_is_not_a_log(tmp_path: Path) -> None:
    SqliteWitnessState.create(tmp_path / "w.sqlite3", "w").close()
    with pytest.raises(SchemaError):
        SqliteLogStore(tmp_path / "w.sqlite3")


def test_appends_get_consecutive_indices_and_duplicates_are_refused(tmp_path: Path) -> None:
    store = SqliteLogStore.create(tmp_path / "log.sqlite3", "o")
    assert [store.append(*_leaf(number)) for number in range(3)] == [0, 1, 2]
    with pytest.raises(DuplicateEntry) as duplicate:
        store.append(*_leaf(1))
    assert duplicate.value.index == 1 and store.size() == 3
    assert store.index_of(_leaf(2)[0]) == 2 and store.index_of(b"\x00" * 32) is None
    assert store.leaf_hashes(2) == [_leaf(0)[0], _leaf(1)[0]]
    with pytest.raises(ValueError):
        store.leaf_hashes(4)
    assert store.entries(1, 10) == [_leaf(1), _leaf(2)]
    store.close()


def test_leaves_cannot_be_updated_or_deleted_even_with_raw_sql(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    store = SqliteLogStore.create(path, "o")
    store.append(*_leaf(0))
    raw = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("UPDATE leaves SET data = x'00' WHERE leaf_index = 0")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            raw.execute("DELETE FROM leaves")
    finally:
        raw.close()
    assert store.entries(0, 1) == [_leaf(0)]
    store.close()


def test_concurrent_appends_from_separate_connections_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    SqliteLogStore.create(path, "o").close()
    writers, per_writer = 6, 15
    indices: list[int] = []
    lock = threading.Lock()

    def write(writer: int) -> None:
        store = SqliteLogStore(path)  # its own connection, as another process would have
        try:
            for number in range(per_writer):
                index = store.append(*_leaf(writer * 1000 + number))
                with lock:
                    indices.append(index)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = SqliteLogStore(path)
    assert sorted(indices) == list(range(writers * per_writer))
    assert store.size() == writers * per_writer
    assert len(set(store.leaf_hashes(store.size()))) == writers * per_writer
    store.close()


def test_checkpoints_are_kept_per_size_and_never_replaced_by_another_root(tmp_path: Path) -> None:
    store = SqliteLogStore.create(tmp_path / "log.sqlite3", "o")
    assert store.latest_checkpoint() is None
    store.save_checkpoint(StoredCheckpoint(1, b"\x01" * 32, "note one\n"))
    store.save_checkpoint(StoredCheckpoint(2, b"\x02" * 32, "note two\n"))
    store.save_checkpoint(StoredCheckpoint(1, b"\x01" * 32, "re-signed\n"))  # same head: the stored note stays
    assert store.checkpoint_at(1) == StoredCheckpoint(1, b"\x01" * 32, "note one\n")
    assert store.latest_checkpoint() == StoredCheckpoint(2, b"\x02" * 32, "note two\n")
    with pytest.raises(ConflictingCheckpoint):
        store.save_checkpoint(StoredCheckpoint(2, b"\x03" * 32, "fork\n"))
    assert store.replace_note(2, "note two\n", "note two, cosigned\n")
    assert not store.replace_note(2, "note two\n", "lost update\n")  # compare-and-swap
    assert store.checkpoint_at(2) == StoredCheckpoint(2, b"\x02" * 32, "note two, cosigned\n")
    store.close()
