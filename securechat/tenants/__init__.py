"""Tenants: API keys, per-tenant policy and admission limits. No Ray, no FastAPI, no ``securechat.config``.

``TenantStore`` (SQLite) holds key digests and policy overrides; ``Authenticator`` turns an ``Authorization``
header into a tenant; ``PolicyResolver`` merges config defaults, config overrides and stored overrides;
``TenantLimiter`` admits a request against the tenant's rates and stream count on one gateway replica.
"""

from securechat.tenants.auth import AuthCode, Authenticator, AuthError, AuthMode, AuthSettings, Principal
from securechat.tenants.limits import LimitCode, LimitExceeded, StreamLease, TenantLimiter, estimate_tokens
from securechat.tenants.policy import PolicyOverride, PolicyResolver, TenantPolicy
from securechat.tenants.server_secret import ServerSecretError
from securechat.tenants.settings import TenantsSettings
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
    "PolicyOverride",
    "PolicyResolver",
    "Principal",
    "ServerSecretError",
    "StreamLease",
    "Tenancy",
    "TenantLimiter",
    "TenantPolicy",
    "TenantStore",
    "TenantsSettings",
    "build_tenancy",
    "estimate_tokens",
]
