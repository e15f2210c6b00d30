"""One call that builds what a gateway replica needs from the ``auth:``, ``tenants:`` and ``database:`` settings.

The tenant database is opened when authentication is required or when ``database.url`` names a shared server:
keys, policies and limits then live there, and every gateway replica on every node shares them. A development
gateway with ``auth.mode: disabled`` and no database takes policies from config alone, limits each tenant in
its own memory (per replica), and creates no database or secret file as a side effect. A database that cannot
be reached fails the build (``DatabaseUnavailable``, with the reason), so a gateway never starts without one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from securechat.db import Database, DatabaseSettings, open_database
from securechat.tenants import db as tenant_schema
from securechat.tenants.auth import Authenticator, AuthMode, AuthSettings
from securechat.tenants.limits import Limiter, TenantLimiter
from securechat.tenants.policy import PolicyResolver
from securechat.tenants.settings import TenantsSettings
from securechat.tenants.shared_limits import SharedLimiter
from securechat.tenants.store import TenantStore


@dataclass(frozen=True, slots=True)
class Tenancy:
    authenticator: Authenticator
    policies: PolicyResolver
    limiter: Limiter
    store: TenantStore | None
    database: Database | None = None

    @property
    def blocking(self) -> bool:
        """True when the request path's tenant calls reach a database (async callers use a thread)."""
        return self.database is not None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
        if self.database is not None:
            self.database.close()


def build_tenancy(
    auth: AuthSettings,
    tenants: TenantsSettings,
    database: DatabaseSettings | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Tenancy:
    """Open the tenant database (if auth is required or a database is configured) and build the authenticator,
    policy resolver and limiter. ``clock`` drives the in-memory limiter only (the shared one uses wall time)."""
    database = database or DatabaseSettings()
    required = auth.mode is AuthMode.REQUIRED
    if not required and not database.shared:
        return Tenancy(
            authenticator=Authenticator(auth, None),
            policies=PolicyResolver(tenants.default_policy, tenants.policies, None),
            limiter=TenantLimiter(
                clock=clock, max_tenants=tenants.max_tracked_tenants, stream_retry_after_s=tenants.stream_retry_after_s
            ),
            store=None,
        )
    opened = open_database(database, tenants.store_path)
    try:
        store = TenantStore(opened, tenants.server_secret_path) if required else None
        tenant_schema.migrate(opened)
    except BaseException:
        with contextlib.suppress(Exception):
            opened.close()
        raise
    return Tenancy(
        authenticator=Authenticator(auth, store),
        policies=PolicyResolver(tenants.default_policy, tenants.policies, store),
        limiter=SharedLimiter(
            opened, lease_ttl_s=tenants.stream_lease_ttl_s, stream_retry_after_s=tenants.stream_retry_after_s
        ),
        store=store,
        database=opened,
    )
