"""TenantStore: keys are shown once, stored as digests only, and authenticate in constant time."""

from __future__ import annotations

import hmac
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from unittest import mock

import pytest

from securechat.db.postgres import PostgresDatabase
from securechat.tenants import api_keys
from securechat.tenants.db import SCHEMA_VERSION, SchemaError
from securechat.tenants.policy import PolicyOverride
from securechat.tenants.server_secret import ServerSecretError, load_or_create_server_secret
from securechat.tenants.store import TenantStore


@pytest.fixture
def store(tmp_path: Path) -> TenantStore:
    return TenantStore(tmp_path / "db" / "tenants.sqlite3", tmp_path / "secrets" / "server_secret")


def test_add_list_revoke(store: TenantStore) -> None:
    first, second = store.add_key("acme"), store.add_key("acme")
    store.add_key("globex")
    assert first != second and first.startswith("sc_")
    assert store.list_tenants() == ["acme", "globex"]
    keys = store.list_keys("acme")
    assert len(keys) == 2
    assert {k.key_id for k in keys} == {first.split("_")[1], second.split("_")[1]}
    assert not any(k.revoked for k in keys)
    assert store.revoke(keys[0].key_id) is True
    assert store.revoke(keys[0].key_id) is False  # already revoked
    assert store.revoke("0123456789abcdef") is False  # unknown
    assert store.revoke("not-a-key-id") is False
    assert [k.revoked for k in store.list_keys("acme")] == [True, False]
    assert store.list_keys("nobody") == []


def test_key_info_shows_nothing_secret(store: TenantStore) -> None:
    key = store.add_key("acme")
    (info,) = store.list_keys("acme")
    assert key.split("_")[2] not in repr(info)
    assert set(info.__slots__) == {"key_id", "tenant_id", "created_at", "revoked"}
    assert key.split("_")[2] not in repr(api_keys.parse_key(key))


def test_authenticate(store: TenantStore) -> None:
    key = store.add_key("acme")
    _, key_id, secret = key.split("_")
    assert store.authenticate(key) == "acme"
    wrong_secret = f"sc_{key_id}_{'0' * 64}"
    assert store.authenticate(wrong_secret) is None
    assert store.authenticate(f"sc_{'f' * 16}_{secret}") is None  # unknown key id
    for malformed in ["", "sc_", key + "0", key[:-1], key.upper(), f"xx_{key_id}_{secret}", key.replace("_", "-")]:
        assert store.authenticate(malformed) is None
    store.revoke(key_id)
    assert store.authenticate(key) is None


def test_authenticate_compares_in_constant_time(store: TenantStore) -> None:
    key = store.add_key("acme")
    unknown = f"sc_{'f' * 16}_{key.split('_')[2]}"
    with mock.patch.object(hmac, "compare_digest", wraps=hmac.compare_digest) as compare:
        assert store.authenticate(key) == "acme"
        assert compare.call_count == 1
        assert store.authenticate(unknown) is None  # the unknown-id path compares too: same cost
        assert compare.call_count == 2


def test_a_key_cannot_move_between_rows(store: TenantStore) -> None:
    """The key id is inside the MAC: copying one row's digest onto another key id does not authenticate."""
    victim, attacker = store.add_key("victim"), store.add_key("attacker")
    connection = sqlite3.connect(store.path)
    victim_id, attacker_id = victim.split("_")[1], attacker.split("_")[1]
    connection.execute(
        "UPDATE api_keys SET digest = (SELECT digest FROM api_keys WHERE key_id = ?) WHERE key_id = ?",
        (attacker_id, victim_id),
    )
    connection.commit()
    connection.close()
    assert store.authenticate(f"sc_{victim_id}_{attacker.split('_')[2]}") is None


def test_database_files_never_hold_a_key_or_its_secret(tmp_path: Path) -> None:
    db = tmp_path / "tenants.sqlite3"
    store = TenantStore(db, tmp_path / "secret")
    keys = [store.add_key(f"tenant{i}") for i in range(5)]
    store.revoke(keys[0].split("_")[1])
    assert store.authenticate(keys[1]) == "tenant1"
    files = [p for p in tmp_path.iterdir() if p.name.startswith("tenants.sqlite3")]
    assert {p.name for p in files} >= {"tenants.sqlite3", "tenants.sqlite3-wal"}
    blobs = b"".join(p.read_bytes() for p in files)
    store.close()
    blobs += db.read_bytes()  # after the checkpoint on close
    for key in keys:
        secret_hex = key.split("_")[2]
        for needle in (key.encode(), secret_hex.encode(), bytes.fromhex(secret_hex)):
            assert needle not in blobs


def test_files_are_private(tmp_path: Path) -> None:
    secret_path = tmp_path / "conf" / "server_secret"
    store = TenantStore(tmp_path / "tenants.sqlite3", secret_path)
    store.add_key("acme")
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tenants.sqlite3").stat().st_mode) == 0o600
    assert len(bytes.fromhex(secret_path.read_text())) == 32


def test_default_secret_path_is_next_to_the_database(tmp_path: Path) -> None:
    TenantStore(tmp_path / "tenants.sqlite3").close()
    assert stat.S_IMODE((tmp_path / "server_secret").stat().st_mode) == 0o600


def test_server_secret_is_refused_when_others_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    load_or_create_server_secret(path)
    os.chmod(path, 0o644)
    with pytest.raises(ServerSecretError):
        load_or_create_server_secret(path)
    os.chmod(path, 0o600)
    path.write_text("not hex\n")
    with pytest.raises(ServerSecretError):
        load_or_create_server_secret(path)


def test_server_secret_creation_agrees_across_racers(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(load_or_create_server_secret(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]  # no temporary files left


def test_a_different_server_secret_is_detected_at_open(tmp_path: Path) -> None:
    db = tmp_path / "tenants.sqlite3"
    key = TenantStore(db, tmp_path / "a").add_key("acme")
    with pytest.raises(ServerSecretError):
        TenantStore(db, tmp_path / "b")
    assert TenantStore(db, tmp_path / "a").authenticate(key) == "acme"


def test_two_stores_share_one_database(tmp_path: Path) -> None:
    """Another process (here: another connection) sees a new key and a revocation at once."""
    db, secret = tmp_path / "tenants.sqlite3", tmp_path / "secret"
    gateway, admin = TenantStore(db, secret), TenantStore(db, secret)
    key = admin.add_key("acme")
    assert gateway.authenticate(key) == "acme"
    admin.revoke(key.split("_")[1])
    assert gateway.authenticate(key) is None


def test_schema_version_is_recorded_and_newer_files_refused(tmp_path: Path) -> None:
    db = tmp_path / "tenants.sqlite3"
    TenantStore(db, tmp_path / "secret").close()
    connection = sqlite3.connect(db)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(SchemaError):
        TenantStore(db, tmp_path / "secret")


def test_tenant_ids_are_validated(store: TenantStore) -> None:
    for bad in ["", "has space", "x" * 65, "tenant\n"]:
        with pytest.raises(ValueError):
            store.add_key(bad)
    assert store.list_tenants() == []


def test_policy_overrides_round_trip(store: TenantStore) -> None:
    assert store.get_policy("acme") is None
    store.set_policy("acme", PolicyOverride(requests_per_minute=5, allowed_regions=None))
    stored = store.get_policy("acme")
    assert stored is not None and stored.updates() == {"requests_per_minute": 5, "allowed_regions": None}
    store.set_policy("acme", PolicyOverride(tokens_per_minute=7))
    assert store.get_policy("acme") == PolicyOverride(tokens_per_minute=7)
    assert store.list_tenants() == ["acme"]
    store.set_policy("acme", None)
    assert store.get_policy("acme") is None


def test_corrupt_stored_policy_fails_closed(store: TenantStore) -> None:
    store.set_policy("acme", PolicyOverride(allowed_regions=("eu-west-1",)))
    connection = sqlite3.connect(store.path)
    connection.execute("UPDATE tenant_policies SET overrides = '{\"allowed_regions\": 5}'")
    connection.commit()
    connection.close()
    with pytest.raises(ValueError):
        store.get_policy("acme")


def test_no_log_line_carries_a_key(store: TenantStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="securechat")
    key = store.add_key("acme")
    store.authenticate(key)
    store.authenticate(key[:-1] + ("0" if key[-1] != "0" else "1"))
    store.revoke(key.split("_")[1])
    store.authenticate(key)
    assert any("api_key_added" in r.getMessage() for r in caplog.records)
    secret = key.split("_")[2]
    assert all(secret[:16] not in r.getMessage() for r in caplog.records)


def test_several_processes_write_one_database(tmp_path: Path) -> None:
    """Processes that open a new file together agree on one schema and one secret, and no write is lost."""
    code = (
        "import sys\n"
        "from securechat.tenants.store import TenantStore\n"
        "store = TenantStore(sys.argv[1], sys.argv[2])\n"
        "for _ in range(20):\n"
        "    store.add_key(sys.argv[3])\n"
    )
    db, secret = str(tmp_path / "t.sqlite3"), str(tmp_path / "secret")
    procs = [subprocess.Popen([sys.executable, "-c", code, db, secret, f"tenant{i}"]) for i in range(3)]
    assert [p.wait(timeout=30) for p in procs] == [0, 0, 0]
    store = TenantStore(db, secret)
    assert [len(store.list_keys(f"tenant{i}")) for i in range(3)] == [20, 20, 20]


def test_a_postgres_store_is_shared_by_every_replica(postgres_url: str, tmp_path: Path) -> None:
    """Two stores on one PostgreSQL database (two gateway nodes): keys, revocations and policies are shared."""
    secret = tmp_path / "shared_secret"  # the same file on every gateway node
    with (
        PostgresDatabase(postgres_url) as node_a,
        PostgresDatabase(postgres_url) as node_b,
        TenantStore(node_a, secret) as admin,
        TenantStore(node_b, secret) as gateway,
    ):
        key = admin.add_key("acme")
        assert gateway.authenticate(key) == "acme"
        assert gateway.authenticate(key[:-1] + ("0" if key[-1] != "0" else "1")) is None
        admin.set_policy("acme", PolicyOverride(requests_per_minute=5))
        assert gateway.get_policy("acme") == PolicyOverride(requests_per_minute=5)
        assert gateway.list_tenants() == ["acme"] and len(gateway.list_keys("acme")) == 1
        admin.revoke(key.split("_")[1])
        assert gateway.authenticate(key) is None


def test_a_postgres_store_refuses_another_secret_and_needs_one(postgres_url: str, tmp_path: Path) -> None:
    with PostgresDatabase(postgres_url) as database:
        TenantStore(database, tmp_path / "a").add_key("acme")
        with pytest.raises(ServerSecretError):
            TenantStore(database, tmp_path / "b")  # a node provisioned with a different secret fails at start
        with pytest.raises(ValueError, match="server_secret_path"):
            TenantStore(database)
