"""Bearer authentication: 401 for any bad credential, 403 for another tenant's key, off only when configured."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from securechat.tenants.auth import AuthCode, Authenticator, AuthError, AuthMode, AuthSettings, parse_bearer
from securechat.tenants.store import TenantStore


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Authenticator, TenantStore, str]:
    store = TenantStore(tmp_path / "t.sqlite3", tmp_path / "secret")
    return Authenticator(AuthSettings(), store), store, store.add_key("acme")


def test_parse_bearer() -> None:
    assert parse_bearer("Bearer abc") == "abc"
    assert parse_bearer("bearer   abc ") == "abc"
    for bad in [None, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "Token abc", "Bearer " + "a" * 9000]:
        assert parse_bearer(bad) is None


def test_valid_key_for_its_own_tenant(setup: tuple[Authenticator, TenantStore, str]) -> None:
    auth, _, key = setup
    principal = auth.check(f"Bearer {key}", "acme")
    assert (principal.tenant_id, principal.authenticated) == ("acme", True)


def test_bad_credentials_are_401(setup: tuple[Authenticator, TenantStore, str]) -> None:
    auth, store, key = setup
    key_id, secret = key.split("_")[1:]
    unknown = f"Bearer sc_{'e' * 16}_{secret}"
    wrong = f"Bearer sc_{key_id}_{'1' * 64}"
    for header in [None, "", "Bearer", f"Basic {key}", f"Bearer {key}x", unknown, wrong]:
        with pytest.raises(AuthError) as refused:
            auth.check(header, "acme")
        assert (refused.value.status, refused.value.code) == (401, AuthCode.UNAUTHORIZED)
        assert key not in str(refused.value) and secret not in repr(refused.value)
    store.revoke(key_id)
    with pytest.raises(AuthError) as refused:
        auth.check(f"Bearer {key}", "acme")
    assert refused.value.status == 401


def test_another_tenants_key_is_403(setup: tuple[Authenticator, TenantStore, str]) -> None:
    auth, _, key = setup
    with pytest.raises(AuthError) as refused:
        auth.check(f"Bearer {key}", "globex")
    assert (refused.value.status, refused.value.code) == (403, AuthCode.FORBIDDEN)


def test_authorize_without_authenticate_is_401(setup: tuple[Authenticator, TenantStore, str]) -> None:
    auth, _, _ = setup
    with pytest.raises(AuthError) as refused:
        auth.authorize(None, "acme")
    assert refused.value.status == 401


def test_auth_is_required_unless_explicitly_disabled(caplog: pytest.LogCaptureFixture) -> None:
    assert AuthSettings().mode is AuthMode.REQUIRED
    with pytest.raises(ValueError):
        Authenticator(AuthSettings(), None)  # required with no store: refuse to start, never fail open
    with pytest.raises(ValidationError):
        AuthSettings.model_validate({"mode": "off"})
    caplog.set_level(logging.WARNING, logger="securechat")
    auth = Authenticator(AuthSettings.model_validate({"mode": "disabled"}), None)
    assert "auth_disabled" in caplog.text
    principal = auth.check(None, "anyone")
    assert (principal.tenant_id, principal.authenticated) == ("anyone", False)


def test_no_log_line_carries_the_key(
    setup: tuple[Authenticator, TenantStore, str], caplog: pytest.LogCaptureFixture
) -> None:
    auth, _, key = setup
    caplog.set_level(logging.DEBUG, logger="securechat")
    auth.check(f"Bearer {key}", "acme")
    for header in [f"Bearer {key}0", f"Bearer {key[:-1]}", f"Basic {key}"]:
        with pytest.raises(AuthError):
            auth.check(header, "acme")
    with pytest.raises(AuthError):
        auth.check(f"Bearer {key}", "globex")
    assert "auth_refused" in caplog.text
    secret = key.split("_")[2]
    assert secret[:12] not in caplog.text and key not in caplog.text
