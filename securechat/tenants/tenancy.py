"""One call that builds what a gateway replica needs from the ``auth:`` and ``tenants:`` settings.

The store is opened only when authentication is required: a development gateway with ``auth.mode: disabled``
takes policies from config alone and creates no database or secret file as a side effect.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from securechat.tenants.auth import Authenticator, AuthMode, AuthSettings
from securechat.tenants.limits import TenantLimiter
from securechat.tenants.policy import PolicyResolver
from securechat.tenants.settings import TenantsSettings
from securechat.tenants.store import TenantStore


@dataclass(frozen=True, slots=True)
class Tenancy:
    authenticator: Authenticator
    policies: PolicyResolver
    limiter: TenantLimiter
    store: TenantStore | None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def build_tenancy(
    auth: AuthSettings, tenants: TenantsSettings, *, clock: Callable[[], float] = time.monotonic
) -> Tenancy:
    """Open the store (if auth is required) and build the authenticator, policy resolver and limiter."""
    store = TenantStore(tenants.store_path, tenants.server_secret_path) if auth.mode is AuthMode.REQUIRED else None
    return Tenancy(
        authenticator=Authenticator(auth, store),
        policies=PolicyResolver(tenants.default_policy, tenants.policies, store),
        limiter=TenantLimiter(
            clock=clock, max_tenants=tenants.max_tracked_tenants, stream_retry_after_s=tenants.stream_retry_after_s
        ),
        store=store,
    )
