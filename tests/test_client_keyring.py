"""The keyring under concurrent use by several processes, and the refusals that keep a key from being lost."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from securechat import state_files
from securechat.client.keyring import Keyring, KeyringError
from securechat.rag.keys import CollectionKey

NUM_ADDS = 40


def _add_many(path: str, prefix: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    keyring = Keyring(Path(path))
    for index in range(NUM_ADDS):
        keyring.add(f"{prefix}{index}", "tenant1", CollectionKey.generate())


def _remove_then_add(path: str, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    keyring = Keyring(Path(path))
    for index in range(NUM_ADDS):
        if index == NUM_ADDS // 4:
            assert keyring.remove("shredded")
        keyring.add(f"b{index}", "tenant1", CollectionKey.generate())


def _race(*targets: tuple[object, tuple[object, ...]]) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [context.Process(target=target, args=(*args, start)) for target, args in targets]  # type: ignore[arg-type]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0


def test_two_processes_adding_at_once_lose_no_key(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    _race((_add_many, (str(path), "a")), (_add_many, (str(path), "b")))
    ids = {entry.collection_id for entry in Keyring(path).entries()}
    assert ids == {f"{prefix}{index}" for prefix in "ab" for index in range(NUM_ADDS)}
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_shredded_key_does_not_come_back_from_a_concurrent_write(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    keyring = Keyring(path)
    keyring.add("shredded", "tenant1", CollectionKey.generate())
    _race((_add_many, (str(path), "a")), (_remove_then_add, (str(path),)))
    ids = {entry.collection_id for entry in keyring.entries()}
    assert "shredded" not in ids
    assert len(ids) == 2 * NUM_ADDS


def test_every_write_is_synced_before_it_replaces_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(state_files.os, "fsync", recording_fsync)
    path = tmp_path / "keyring.json"
    Keyring(path).add("c1", "tenant1", CollectionKey.generate())
    assert len(synced) == 2 and synced[1] == str(tmp_path)  # the new file (before the rename), then the directory
    assert Path(synced[0]).parent == tmp_path and Path(synced[0]).name.startswith(".keyring.json.")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".keyring.json.")]  # no temporary file left


def test_an_id_the_keyring_holds_is_never_overwritten(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    original = keyring.add("c1", "tenant1", CollectionKey.generate())
    with pytest.raises(KeyringError, match="already holds a key for collection c1"):
        keyring.add("c1", "tenant1", CollectionKey.generate())
    assert keyring.get("c1").key == original.key
    other = Keyring(tmp_path / "other.json")
    other.add("c1", "tenant1", CollectionKey.generate())
    with pytest.raises(KeyringError, match="holds another key"):
        keyring.import_entry(other.export("c1"))
    assert keyring.get("c1").key == original.key
    with pytest.raises(KeyringError, match="malformed"):
        keyring.add("../../etc", "tenant1", CollectionKey.generate())


def test_the_counter_only_moves_forward_and_travels_with_an_export(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "keyring.json")
    keyring.add("c1", "tenant1", CollectionKey.generate())
    assert keyring.advance("c1", 5).counter == 5
    assert keyring.advance("c1", 3).counter == 5
    exported = keyring.export("c1")
    elsewhere = Keyring(tmp_path / "elsewhere.json")
    assert elsewhere.import_entry(exported).counter == 5
    keyring.advance("c1", 9)
    assert elsewhere.import_entry(keyring.export("c1")).counter == 9  # the same key again: the counter moves on
    assert elsewhere.import_entry(exported).counter == 9  # an older export never moves it back
