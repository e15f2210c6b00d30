"""``tenants:`` in the app config: where the tenant database and server secret live, and the policy defaults.

This module imports nothing from ``securechat.config`` so that ``config.py`` can import it without a cycle.
Paths default to the invoking user's data and config directories for development; production sets both,
with the server secret on a separate (secret-manager) mount. With ``database.url`` set (a cluster), the keys,
policies and limits live in PostgreSQL instead of ``store_path``, and every gateway node mounts the same
server secret.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from securechat.tenants.ids import is_id
from securechat.tenants.policy import PolicyOverride, TenantPolicy

DEFAULT_STORE_PATH = Path("~/.local/share/securechat/tenants.sqlite3")
DEFAULT_SERVER_SECRET_PATH = Path("~/.config/securechat/api_key_server_secret")


class TenantsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    store_path: Path = DEFAULT_STORE_PATH
    server_secret_path: Path = DEFAULT_SERVER_SECRET_PATH
    default_policy: TenantPolicy = TenantPolicy()
    policies: dict[str, PolicyOverride] = Field(default_factory=dict)  # per tenant; the database overrides these
    max_tracked_tenants: int = Field(default=10_000, ge=1)  # in-memory admission state (no tenant database)
    stream_retry_after_s: float = Field(default=1.0, gt=0)  # Retry-After hint for too_many_streams
    # A shared stream lease's life without renewal: streams renew at a third of it, so only the streams of a
    # gateway replica that died outlive their end, by at most this long.
    stream_lease_ttl_s: float = Field(default=120.0, ge=5, le=3600)

    @field_validator("policies")
    @classmethod
    def _tenant_ids(cls, value: dict[str, PolicyOverride]) -> dict[str, PolicyOverride]:
        if not all(is_id(tenant_id) for tenant_id in value):
            raise ValueError("policy keys are tenant ids (short identifiers)")
        return value
