"""Policies: config defaults, config overrides, database overrides on top."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from securechat.tenants.policy import PolicyOverride, PolicyResolver, TenantPolicy
from securechat.tenants.settings import TenantsSettings
from securechat.tenants.store import TenantStore


def test_defaults_allow_every_region() -> None:
    policy = TenantPolicy()
    assert policy.allowed_regions is None and policy.allows_region("anywhere-1")
    assert TenantPolicy(allowed_regions=("eu-west-1",)).allows_region("us-west-1") is False


@pytest.mark.parametrize(
    "fields",
    [
        {"requests_per_minute": 0},
        {"max_new_tokens": 40_000},
        {"allowed_regions": ["bad region"]},
        {"allowed_regions": ["eu-west-1\n"]},
        {"unknown": 1},
    ],
)
def test_invalid_policies_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TenantPolicy.model_validate(fields)
    with pytest.raises(ValidationError):
        PolicyOverride.model_validate(fields)


def test_override_changes_only_what_it_sets() -> None:
    base = TenantPolicy(allowed_regions=("eu-west-1",), requests_per_minute=10)
    assert PolicyOverride(tokens_per_minute=5).apply_to(base) == base.model_copy(update={"tokens_per_minute": 5})
    assert PolicyOverride.model_validate({"allowed_regions": None}).apply_to(base).allowed_regions is None
    assert PolicyOverride().apply_to(base) == base


def test_database_overrides_config_which_overrides_defaults(tmp_path: Path) -> None:
    settings = TenantsSettings.model_validate(
        {
            "store_path": tmp_path / "t.sqlite3",
            "server_secret_path": tmp_path / "secret",
            "default_policy": {"requests_per_minute": 100, "tokens_per_minute": 1000},
            "policies": {"acme": {"requests_per_minute": 50, "allowed_regions": ["eu-west-1"]}},
        }
    )
    store = TenantStore(settings.store_path, settings.server_secret_path)
    resolver = PolicyResolver(settings.default_policy, settings.policies, store)
    assert resolver.resolve("other") == settings.default_policy
    acme = resolver.resolve("acme")
    assert (acme.requests_per_minute, acme.tokens_per_minute, acme.allowed_regions) == (50, 1000, ("eu-west-1",))
    store.set_policy("acme", PolicyOverride(requests_per_minute=5))
    acme = resolver.resolve("acme")
    assert (acme.requests_per_minute, acme.allowed_regions) == (5, ("eu-west-1",))
    store.set_policy("acme", PolicyOverride.model_validate({"allowed_regions": None}))
    assert resolver.resolve("acme").allowed_regions is None  # an explicit null in the DB widens to all regions
    assert PolicyResolver(settings.default_policy).resolve("acme") == settings.default_policy


def test_settings_refuse_bad_tenant_ids() -> None:
    with pytest.raises(ValidationError):
        TenantsSettings.model_validate({"policies": {"bad tenant": {}}})
