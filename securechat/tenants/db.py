"""The tenant database's tables, for either backend (``securechat.db``): keys, policies, and shared limits.

Version 1 holds API key digests and policy overrides. Version 2 adds the rate-limit state every gateway
replica shares (one row of buckets per tenant) and one row per open stream (a lease with an expiry, so the
streams of a gateway replica that died are forgotten after ``tenants.stream_lease_ttl_s``). A database from a
newer release is refused rather than misread (``SchemaError``).
"""

from __future__ import annotations

from typing import Final

from securechat.db import Database, SchemaError

COMPONENT: Final = "tenants"

_V1: Final = (
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        digest {blob} NOT NULL,
        created_at {real} NOT NULL,
        revoked_at {real}
    )
    """,
    "CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id)",
    "CREATE TABLE tenant_policies (tenant_id TEXT PRIMARY KEY, overrides TEXT NOT NULL, updated_at {real} NOT NULL)",
)
_V2: Final = (
    """
    CREATE TABLE tenant_limits (
        tenant_id TEXT PRIMARY KEY,
        requests_capacity {real} NOT NULL,
        requests_level {real} NOT NULL,
        tokens_capacity {real} NOT NULL,
        tokens_level {real} NOT NULL,
        updated_at {real} NOT NULL
    )
    """,
    """
    CREATE TABLE tenant_streams (
        lease_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        expires_at {real} NOT NULL
    )
    """,
    "CREATE INDEX tenant_streams_by_tenant ON tenant_streams (tenant_id, expires_at)",
)
STEPS: Final = (_V1, _V2)
SCHEMA_VERSION: Final = len(STEPS)

__all__ = ["SCHEMA_VERSION", "SchemaError", "migrate"]


def migrate(database: Database) -> None:
    database.migrate(COMPONENT, STEPS)
