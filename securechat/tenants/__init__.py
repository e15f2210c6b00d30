"""Tenants: API keys, per-tenant policy and admission limits. No Ray, no FastAPI, no ``securechat.config``.

``TenantStore`` (SQLite or PostgreSQL) holds key digests and policy overrides; ``Authenticator`` turns an
``Authorization`` header into a tenant; ``PolicyResolver`` merges config defaults, config overrides and stored
overrides; a ``Limiter`` admits a request against the tenant's rates and stream count: ``SharedLimiter`` in
the tenant database (every replica shares it), ``TenantLimiter`` in one replica's memory (development).
"""

from securechat.tenants.auth import AuthCode, Authenticator, AuthError, AuthMode, AuthSettings, Principal
from securechat.tenants.limits import LimitCode, Limiter, LimitExceeded, StreamLease, TenantLimiter, estimate_tokens
from securechat.tenants.policy import PolicyOverride, PolicyResolver, TenantPolicy
from securechat.tenants.server_secret import ServerSecretError
from securechat.tenants.settings import TenantsSettings
from securechat.tenants.shared_limits import SharedLimiter
from securechat.tenants.store import KeyInfo, TenantStore
from securechat.tenants.tenancy import Tenancy, build_tenancy

__all__ = [
    "AuthCode",
    "AuthError",
    "AuthMode",
    "AuthSettings",
    "Authenticator",
    "KeyInfo",
    "LimitCode",
    "LimitExceeded",
    "Limiter",
    "PolicyOverride",
    "PolicyResolver",
    "Principal",
    "ServerSecretError",
    "SharedLimiter",
    "StreamLease",
    "Tenancy",
    "TenantLimiter",
    "TenantPolicy",
    "TenantStore",
    "TenantsSettings",
    "build_tenancy",
    "estimate_tokens",
]
