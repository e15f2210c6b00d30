"""Bearer-token authentication for the HTTP layer, independent of FastAPI.

Two kinds of bearer credential: an API key (``sc_<id>_<secret>``, from the tenant store) and a JWT from one of
the identity providers in ``auth.issuers`` (``securechat.tenants.oidc``). For an API key, 401 for everything
wrong with it (missing, malformed, unknown, wrong secret, revoked: one answer, so the endpoint is no oracle for
which keys exist); for a token, 401 naming what is wrong (expired, wrong audience, unknown key, ...), as
RFC 6750's ``error="invalid_token"``. 403 when the credential names a tenant other than the request body's
``tenant_id``, or when a token lacks the scope the route needs (``error="insufficient_scope"``). An API key may
do everything its tenant may. Authentication can be turned off only by ``auth.mode: disabled`` in config, never
by a missing setting or an environment variable; the body's tenant is then trusted, and a warning is logged at
start-up so a disabled deployment is visible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from securechat.logs import get_logger, log_event
from securechat.tenants.api_keys import MAX_KEY_CHARS
from securechat.tenants.oidc import IssuerSettings, Scope, TokenRefused, TokenVerifier, looks_like_jwt
from securechat.tenants.oidc.issuers import ALL_SCOPES
from securechat.tenants.oidc.verifier import MAX_TOKEN_CHARS

logger = get_logger("tenants.auth")

_SCHEME: Final = "bearer"
# Authorization values above this length are refused unparsed: no regex runs over attacker-sized input.
_MAX_HEADER_CHARS: Final = len("Bearer ") + max(MAX_KEY_CHARS, MAX_TOKEN_CHARS) + 16
WWW_AUTHENTICATE: Final = 'Bearer realm="securechat"'


class AuthMode(StrEnum):
    REQUIRED = "required"
    DISABLED = "disabled"  # development only: trusts the body's tenant_id


class AuthSettings(BaseModel):
    """``auth:`` in the app config. The default is ``required``; there is no implicit way to disable it.
    ``issuers``: identity providers whose tokens are accepted beside API keys (docs/tenants.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: AuthMode = AuthMode.REQUIRED
    issuers: tuple[IssuerSettings, ...] = ()

    @field_validator("issuers")
    @classmethod
    def _unique(cls, value: tuple[IssuerSettings, ...]) -> tuple[IssuerSettings, ...]:
        if len({issuer.issuer for issuer in value}) != len(value):
            raise ValueError("each issuer is listed once")
        return value


class AuthCode(StrEnum):
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"


class AuthError(Exception):
    """A refused credential. ``status`` is 401 or 403; the message is the code, never the presented key.
    ``reason`` (a token's refusals) and ``scope`` (the one missing) go to the caller as RFC 6750 says."""

    def __init__(self, status: int, code: AuthCode, reason: str | None = None, scope: str | None = None) -> None:
        super().__init__(code.value)
        self.status = status
        self.code = code
        self.reason = reason
        self.scope = scope

    @property
    def www_authenticate(self) -> str | None:
        """The ``WWW-Authenticate`` value of this refusal (RFC 6750 section 3), or None for a tenant mismatch."""
        if self.scope is not None:
            return f'{WWW_AUTHENTICATE}, error="insufficient_scope", scope="{self.scope}"'
        if self.status != 401:
            return None  # the credential is good; it names another tenant (or one its issuer may not name)
        if self.reason is not None:
            return f'{WWW_AUTHENTICATE}, error="invalid_token", error_description="{self.reason}"'
        return WWW_AUTHENTICATE


class KeyVerifier(Protocol):
    """What authentication needs from the tenant store."""

    def authenticate(self, presented_key: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Credential:
    """An authenticated caller: its tenant, and what it may do (an API key: everything; a token: its scopes)."""

    tenant_id: str
    scopes: frozenset[Scope] = ALL_SCOPES
    kind: str = "api_key"  # or "token"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is from. ``authenticated`` is False only when auth is disabled."""

    tenant_id: str
    authenticated: bool


def parse_bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or None if absent or not of that form."""
    if authorization is None or len(authorization) > _MAX_HEADER_CHARS:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token or " " in token:
        return None
    return token


class Authenticator:
    """Turns an ``Authorization`` header and the body's tenant id into the request's tenant, or ``AuthError``."""

    def __init__(
        self, settings: AuthSettings, verifier: KeyVerifier | None, tokens: TokenVerifier | None = None
    ) -> None:
        if settings.mode is AuthMode.REQUIRED and verifier is None:
            raise ValueError("auth mode 'required' needs a key verifier (the tenant store)")
        self.settings = settings
        self._verifier = verifier
        self._tokens = tokens if tokens is not None else TokenVerifier(settings.issuers) if settings.issuers else None
        if settings.mode is AuthMode.DISABLED:
            log_event(logger, "auth_disabled", level=logging.WARNING, reason="development_setting")

    @property
    def required(self) -> bool:
        return self.settings.mode is AuthMode.REQUIRED

    @property
    def tokens(self) -> TokenVerifier | None:
        return self._tokens

    def authenticate(self, authorization: str | None) -> Credential | None:
        """The caller's credential (raises 401; IssuerUnavailable when a token's issuer has no keys at hand);
        None when auth is disabled. Call it before reading the body. A token's keys may need fetching (the
        first time, or when the issuer rotated them): call it off the event loop when issuers are configured."""
        if not self.required:
            return None
        assert self._verifier is not None
        token = parse_bearer(authorization)
        if token is not None and self._tokens is not None and looks_like_jwt(token):
            try:
                verified = self._tokens.verify(token)
            except TokenRefused as refused:
                code = AuthCode.UNAUTHORIZED if refused.status == 401 else AuthCode.FORBIDDEN
                raise AuthError(refused.status, code, reason=refused.reason) from None
            return Credential(verified.tenant_id, verified.scopes, "token")
        tenant_id = self._verifier.authenticate(token) if token is not None else None
        if tenant_id is None:
            reason = "missing" if authorization is None else "malformed" if token is None else "invalid_key"
            log_event(logger, "auth_refused", status_code=401, reason=reason)
            raise AuthError(401, AuthCode.UNAUTHORIZED)
        return Credential(tenant_id)

    def authorize(self, credential: Credential | None, body_tenant_id: str, needs: Iterable[Scope] = ()) -> Principal:
        """Check the credential's tenant against the body's ``tenant_id``, and that it holds every scope in
        ``needs`` (raises 403)."""
        if not self.required:
            return Principal(body_tenant_id, authenticated=False)
        if credential is None:  # authenticate() was skipped: never let that pass as a tenant match
            raise AuthError(401, AuthCode.UNAUTHORIZED)
        if credential.tenant_id != body_tenant_id:
            log_event(logger, "auth_refused", status_code=403, reason="tenant_mismatch", tenant_id=credential.tenant_id)
            raise AuthError(403, AuthCode.FORBIDDEN)
        missing = next((scope for scope in needs if scope not in credential.scopes), None)
        if missing is not None:
            log_event(logger, "auth_refused", status_code=403, reason="scope_missing", tenant_id=credential.tenant_id)
            raise AuthError(403, AuthCode.FORBIDDEN, reason="scope_missing", scope=missing.value)
        return Principal(credential.tenant_id, authenticated=True)

    def check(self, authorization: str | None, body_tenant_id: str, needs: Iterable[Scope] = ()) -> Principal:
        """``authenticate`` then ``authorize``, for callers that have the body already."""
        return self.authorize(self.authenticate(authorization), body_tenant_id, needs)
