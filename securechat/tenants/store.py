"""``TenantStore``: API keys and per-tenant policy overrides in the tenant database.

Only an HMAC digest of each key's secret is stored (see ``api_keys``); the server secret that keys the HMAC is
read from its own file (see ``server_secret``). ``authenticate`` is on the request path: one primary-key lookup
and one constant-time comparison, and it answers None for every kind of failure so callers cannot become an
oracle for which part of a key was wrong. A revocation is visible to every process at its next lookup.
One connection is shared under a lock, so a store may be used from several threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from securechat.logs import get_logger, log_event
from securechat.tenants import api_keys
from securechat.tenants.db import connect
from securechat.tenants.ids import is_id
from securechat.tenants.policy import PolicyOverride
from securechat.tenants.server_secret import ServerSecretError, fingerprint, load_or_create_server_secret

logger = get_logger("tenants")

DEFAULT_SECRET_NAME = "server_secret"
# Compared against when the key id is unknown, so that path costs the same as a wrong secret.
_DUMMY_DIGEST = bytes(api_keys.DIGEST_BYTES)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never its secret or digest."""

    key_id: str
    tenant_id: str
    created_at: datetime
    revoked: bool


class TenantStore:
    """API keys and policy overrides for all tenants, in the SQLite file at ``path``.

    ``server_secret_path`` defaults to ``server_secret`` next to the database; production should point it at a
    separate mount so a copy of the database directory does not carry the secret with it.
    """

    def __init__(
        self,
        path: Path | str,
        server_secret_path: Path | str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        secret_path = (
            Path(server_secret_path).expanduser() if server_secret_path else self.path.with_name(DEFAULT_SECRET_NAME)
        )
        self._secret = load_or_create_server_secret(secret_path)
        self._clock = clock
        self._lock = threading.Lock()
        self._connection = connect(self.path)
        try:
            self._check_secret_fingerprint()
        except BaseException:
            self._connection.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> TenantStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # API keys

    def add_key(self, tenant_id: str) -> str:
        """A new key for ``tenant_id``. The returned string is the only copy: it cannot be recovered later."""
        _require_id(tenant_id)
        presented, parsed = api_keys.new_key()
        digest = api_keys.key_digest(self._secret, parsed.key_id, parsed.secret)
        with self._write() as connection:
            connection.execute(
                "INSERT INTO api_keys (key_id, tenant_id, digest, created_at) VALUES (?, ?, ?, ?)",
                (parsed.key_id, tenant_id, digest, self._clock()),
            )
        log_event(logger, "api_key_added", tenant_id=tenant_id, key_id=parsed.key_id)
        return presented

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key or it was already revoked."""
        if not api_keys.is_key_id(key_id):
            return False
        with self._write() as connection:
            cursor = connection.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL", (self._clock(), key_id)
            )
            revoked = cursor.rowcount == 1
        if revoked:
            log_event(logger, "api_key_revoked", key_id=key_id)
        return revoked

    def authenticate(self, presented_key: str) -> str | None:
        """The tenant a live key belongs to, or None (malformed, unknown, wrong secret or revoked alike)."""
        parsed = api_keys.parse_key(presented_key)
        if parsed is None:
            return None
        with self._lock:
            row = self._connection.execute(
                "SELECT tenant_id, digest, revoked_at FROM api_keys WHERE key_id = ?", (parsed.key_id,)
            ).fetchone()
        presented = api_keys.key_digest(self._secret, parsed.key_id, parsed.secret)
        expected = bytes(row[1]) if row is not None else _DUMMY_DIGEST
        matches = api_keys.digests_match(expected, presented)
        if row is None or not matches or row[2] is not None:
            return None
        tenant_id: str = row[0]
        return tenant_id

    def list_tenants(self) -> list[str]:
        """Every tenant with a key (live or revoked) or a stored policy, sorted."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT tenant_id FROM api_keys UNION SELECT tenant_id FROM tenant_policies ORDER BY tenant_id"
            ).fetchall()
        return [row[0] for row in rows]

    def list_keys(self, tenant_id: str) -> list[KeyInfo]:
        """The tenant's keys, oldest first: ids, creation times and revocation, nothing secret."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT key_id, created_at, revoked_at FROM api_keys WHERE tenant_id = ? ORDER BY created_at, key_id",
                (tenant_id,),
            ).fetchall()
        return [
            KeyInfo(key_id, tenant_id, datetime.fromtimestamp(created_at, UTC), revoked_at is not None)
            for key_id, created_at, revoked_at in rows
        ]

    # Policy overrides

    def set_policy(self, tenant_id: str, override: PolicyOverride | None) -> None:
        """Store the tenant's override (replacing any earlier one); None removes it."""
        _require_id(tenant_id)
        with self._write() as connection:
            if override is None:
                connection.execute("DELETE FROM tenant_policies WHERE tenant_id = ?", (tenant_id,))
            else:
                connection.execute(
                    "INSERT INTO tenant_policies (tenant_id, overrides, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET overrides = excluded.overrides, "
                    "updated_at = excluded.updated_at",
                    (tenant_id, override.model_dump_json(exclude_unset=True), self._clock()),
                )
        log_event(logger, "tenant_policy_set", tenant_id=tenant_id, state="cleared" if override is None else "set")

    def get_policy(self, tenant_id: str) -> PolicyOverride | None:
        """The stored override, or None. A stored value that no longer validates raises (fail closed)."""
        with self._lock:
            row = self._connection.execute(
                "SELECT overrides FROM tenant_policies WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
        return None if row is None else PolicyOverride.model_validate_json(row[0])

    # Internals

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front, so concurrent writers queue, not deadlock."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def _check_secret_fingerprint(self) -> None:
        mine = fingerprint(self._secret)
        with self._write() as connection:
            row = connection.execute("SELECT value FROM meta WHERE name = 'server_secret_fingerprint'").fetchone()
            if row is None:
                connection.execute("INSERT INTO meta (name, value) VALUES ('server_secret_fingerprint', ?)", (mine,))
            elif row[0] != mine:
                raise ServerSecretError("the server secret file is not the one this tenant database was made with")


def _require_id(tenant_id: str) -> None:
    if not is_id(tenant_id):
        raise ValueError("tenant ids are short identifiers")
