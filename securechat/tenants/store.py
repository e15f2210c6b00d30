"""``TenantStore``: API keys and per-tenant policy overrides in the tenant database (SQLite or PostgreSQL).

Only an HMAC digest of each key's secret is stored (see ``api_keys``); the server secret that keys the HMAC is
read from its own file (see ``server_secret``), which every gateway node must share. ``authenticate`` is on the
request path: one primary-key lookup and one constant-time comparison, and it answers None for every kind of
failure so callers cannot become an oracle for which part of a key was wrong. A revocation is visible to every
process, on every node when the database is PostgreSQL, at its next lookup. The store may be used from several
threads; its calls block (a network round trip with PostgreSQL), so async callers run them in a thread.
``DatabaseUnavailable`` comes through when the database cannot be reached.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from securechat.db import Database
from securechat.db.sqlite import SQLiteDatabase
from securechat.logs import get_logger, log_event
from securechat.tenants import api_keys
from securechat.tenants.db import migrate
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
    """API keys and policy overrides for all tenants, in ``database`` (a ``Database``, or an SQLite file path).

    ``server_secret_path`` defaults to ``server_secret`` next to an SQLite file; production should point it at a
    separate mount so a copy of the database directory does not carry the secret with it (with PostgreSQL it is
    required). A store opened on a path owns its database and closes it; one given a ``Database`` closes it only
    with ``owns_database``.
    """

    def __init__(
        self,
        database: Database | Path | str,
        server_secret_path: Path | str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        owns_database: bool = False,
    ) -> None:
        self._owns_database = owns_database or not isinstance(database, Database)
        self.database = SQLiteDatabase(database) if not isinstance(database, Database) else database
        self.path: Path | None = self.database.path if isinstance(self.database, SQLiteDatabase) else None
        self._clock = clock
        try:
            if server_secret_path:
                secret_path = Path(server_secret_path).expanduser()
            elif self.path is not None:
                secret_path = self.path.with_name(DEFAULT_SECRET_NAME)
            else:
                raise ValueError("a tenant store on a database server needs server_secret_path")
            self._secret = load_or_create_server_secret(secret_path)
            migrate(self.database)
            self._check_secret_fingerprint()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._owns_database:
            self.database.close()

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
        with self.database.transaction() as tx:
            tx.execute(
                "INSERT INTO api_keys (key_id, tenant_id, digest, created_at) VALUES (?, ?, ?, ?)",
                (parsed.key_id, tenant_id, digest, self._clock()),
            )
        log_event(logger, "api_key_added", tenant_id=tenant_id, key_id=parsed.key_id)
        return presented

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when there is no such key or it was already revoked."""
        if not api_keys.is_key_id(key_id):
            return False
        with self.database.transaction() as tx:
            revoked = (
                tx.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                    (self._clock(), key_id),
                ).rowcount
                == 1
            )
        if revoked:
            log_event(logger, "api_key_revoked", key_id=key_id)
        return revoked

    def authenticate(self, presented_key: str) -> str | None:
        """The tenant a live key belongs to, or None (malformed, unknown, wrong secret or revoked alike)."""
        parsed = api_keys.parse_key(presented_key)
        if parsed is None:
            return None
        with self.database.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT tenant_id, digest, revoked_at FROM api_keys WHERE key_id = ?", (parsed.key_id,)
            ).first()
        presented = api_keys.key_digest(self._secret, parsed.key_id, parsed.secret)
        expected = bytes(row[1]) if row is not None else _DUMMY_DIGEST
        matches = api_keys.digests_match(expected, presented)
        if row is None or not matches or row[2] is not None:
            return None
        tenant_id: str = row[0]
        return tenant_id

    def list_tenants(self) -> list[str]:
        """Every tenant with a key (live or revoked) or a stored policy, sorted."""
        with self.database.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT tenant_id FROM api_keys UNION SELECT tenant_id FROM tenant_policies ORDER BY tenant_id"
            ).rows
        return [row[0] for row in rows]

    def list_keys(self, tenant_id: str) -> list[KeyInfo]:
        """The tenant's keys, oldest first: ids, creation times and revocation, nothing secret."""
        with self.database.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT key_id, created_at, revoked_at FROM api_keys WHERE tenant_id = ? ORDER BY created_at, key_id",
                (tenant_id,),
            ).rows
        return [
            KeyInfo(key_id, tenant_id, datetime.fromtimestamp(created_at, UTC), revoked_at is not None)
            for key_id, created_at, revoked_at in rows
        ]

    # Policy overrides

    def set_policy(self, tenant_id: str, override: PolicyOverride | None) -> None:
        """Store the tenant's override (replacing any earlier one); None removes it."""
        _require_id(tenant_id)
        with self.database.transaction() as tx:
            if override is None:
                tx.execute("DELETE FROM tenant_policies WHERE tenant_id = ?", (tenant_id,))
            else:
                tx.execute(
                    "INSERT INTO tenant_policies (tenant_id, overrides, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (tenant_id) DO UPDATE SET overrides = excluded.overrides, "
                    "updated_at = excluded.updated_at",
                    (tenant_id, override.model_dump_json(exclude_unset=True), self._clock()),
                )
        log_event(logger, "tenant_policy_set", tenant_id=tenant_id, state="cleared" if override is None else "set")

    def get_policy(self, tenant_id: str) -> PolicyOverride | None:
        """The stored override, or None. A stored value that no longer validates raises (fail closed)."""
        with self.database.transaction(write=False) as tx:
            row = tx.execute("SELECT overrides FROM tenant_policies WHERE tenant_id = ?", (tenant_id,)).first()
        return None if row is None else PolicyOverride.model_validate_json(row[0])

    # Internals

    def _check_secret_fingerprint(self) -> None:
        mine = fingerprint(self._secret)
        with self.database.transaction() as tx:  # the first store to open the database records its secret
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('server_secret_fingerprint', ?) ON CONFLICT DO NOTHING", (mine,)
            )
            (stored,) = tx.execute("SELECT value FROM meta WHERE name = 'server_secret_fingerprint'").one()
        if stored != mine:
            raise ServerSecretError("the server secret file is not the one this tenant database was made with")


def _require_id(tenant_id: str) -> None:
    if not is_id(tenant_id):
        raise ValueError("tenant ids are short identifiers")
