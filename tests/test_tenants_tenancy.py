"""build_tenancy: the store is opened only when auth is required; the pieces work together."""

from __future__ import annotations

from pathlib import Path

import pytest

from securechat.db import DatabaseSettings
from securechat.tenants import (
    AuthError,
    AuthSettings,
    LimitCode,
    LimitExceeded,
    SharedLimiter,
    TenantLimiter,
    TenantsSettings,
    build_tenancy,
)


def settings(tmp_path: Path) -> TenantsSettings:
    return TenantsSettings.model_validate(
        {
            "store_path": tmp_path / "data" / "t.sqlite3",
            "server_secret_path": tmp_path / "secret",
            "default_policy": {"requests_per_minute": 1},
        }
    )


def test_required_auth_end_to_end(tmp_path: Path) -> None:
    tenancy = build_tenancy(AuthSettings(), settings(tmp_path))
    assert tenancy.store is not None
    key = tenancy.store.add_key("acme")
    principal = tenancy.authenticator.check(f"Bearer {key}", "acme")
    policy = tenancy.policies.resolve(principal.tenant_id)
    tenancy.limiter.admit(principal.tenant_id, policy, 10, region="us-west-1").release()
    with pytest.raises(LimitExceeded) as refused:
        tenancy.limiter.admit(principal.tenant_id, policy, 10)
    assert refused.value.code is LimitCode.RATE_LIMITED
    with pytest.raises(AuthError):
        tenancy.authenticator.check(None, "acme")
    tenancy.close()


def test_disabled_auth_creates_no_files(tmp_path: Path) -> None:
    tenancy = build_tenancy(AuthSettings.model_validate({"mode": "disabled"}), settings(tmp_path))
    assert tenancy.store is None and list(tmp_path.iterdir()) == []
    assert tenancy.authenticator.check(None, "acme").tenant_id == "acme"
    assert tenancy.policies.resolve("acme").requests_per_minute == 1


def test_a_database_url_shares_limits_even_with_auth_disabled(tmp_path: Path, postgres_url: str) -> None:
    disabled = AuthSettings.model_validate({"mode": "disabled"})
    replicas = [build_tenancy(disabled, settings(tmp_path), DatabaseSettings(url=postgres_url)) for _ in range(2)]
    assert all(isinstance(r.limiter, SharedLimiter) and r.store is None for r in replicas)
    assert list(tmp_path.iterdir()) == []  # no SQLite file, no server secret
    policy = replicas[0].policies.resolve("acme")  # one request per minute
    replicas[0].limiter.admit("acme", policy, 10).release()
    with pytest.raises(LimitExceeded):
        replicas[1].limiter.admit("acme", policy, 10)  # the other replica sees the same allowance
    for replica in replicas:
        replica.close()


def test_without_a_database_each_replica_limits_in_memory(tmp_path: Path) -> None:
    tenancy = build_tenancy(AuthSettings.model_validate({"mode": "disabled"}), settings(tmp_path))
    assert isinstance(tenancy.limiter, TenantLimiter) and not tenancy.blocking
