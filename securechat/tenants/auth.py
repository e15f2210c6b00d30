"""Bearer-token authentication for the HTTP layer, independent of FastAPI.

401 for everything wrong with the credential itself (missing, malformed, unknown, wrong secret, revoked: one
answer, so the endpoint is no oracle for which keys exist); 403 when a valid key names a tenant other than the
request body's ``tenant_id``. Authentication can be turned off only by ``auth.mode: disabled`` in config, never
by a missing setting or an environment variable; the body's tenant is then trusted, and a warning is logged at
start-up so a disabled deployment is visible.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict

from securechat.logs import get_logger, log_event
from securechat.tenants.api_keys import MAX_KEY_CHARS

logger = get_logger("tenants.auth")

_SCHEME: Final = "bearer"
# Authorization values above this length are refused unparsed: no regex runs over attacker-sized input.
_MAX_HEADER_CHARS: Final = len("Bearer ") + MAX_KEY_CHARS + 16
WWW_AUTHENTICATE: Final = 'Bearer realm="securechat"'


class AuthMode(StrEnum):
    REQUIRED = "required"
    DISABLED = "disabled"  # development only: trusts the body's tenant_id


class AuthSettings(BaseModel):
    """``auth:`` in the app config. The default is ``required``; there is no implicit way to disable it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: AuthMode = AuthMode.REQUIRED


class AuthCode(StrEnum):
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"


class AuthError(Exception):
    """A refused credential. ``status`` is 401 or 403; the message is the code, never the presented key."""

    def __init__(self, status: int, code: AuthCode) -> None:
        super().__init__(code.value)
        self.status = status
        self.code = code


class KeyVerifier(Protocol):
    """What authentication needs from the tenant store."""

    def authenticate(self, presented_key: str) -> str | None: ...


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

    def __init__(self, settings: AuthSettings, verifier: KeyVerifier | None) -> None:
        if settings.mode is AuthMode.REQUIRED and verifier is None:
            raise ValueError("auth mode 'required' needs a key verifier (the tenant store)")
        self.settings = settings
        self._verifier = verifier
        if settings.mode is AuthMode.DISABLED:
            log_event(logger, "auth_disabled", level=logging.WARNING, reason="development_setting")

    @property
    def required(self) -> bool:
        return self.settings.mode is AuthMode.REQUIRED

    def authenticate(self, authorization: str | None) -> str | None:
        """The key's tenant (raises 401); None when auth is disabled. Cheap: call it before reading the body."""
        if not self.required:
            return None
        assert self._verifier is not None
        token = parse_bearer(authorization)
        tenant_id = self._verifier.authenticate(token) if token is not None else None
        if tenant_id is None:
            reason = "missing" if authorization is None else "malformed" if token is None else "invalid_key"
            log_event(logger, "auth_refused", status_code=401, reason=reason)
            raise AuthError(401, AuthCode.UNAUTHORIZED)
        return tenant_id

    def authorize(self, key_tenant_id: str | None, body_tenant_id: str) -> Principal:
        """Check the authenticated tenant against the body's ``tenant_id`` (raises 403)."""
        if not self.required:
            return Principal(body_tenant_id, authenticated=False)
        if key_tenant_id is None:  # authenticate() was skipped: never let that pass as a tenant match
            raise AuthError(401, AuthCode.UNAUTHORIZED)
        if key_tenant_id != body_tenant_id:
            log_event(logger, "auth_refused", status_code=403, reason="tenant_mismatch", tenant_id=key_tenant_id)
            raise AuthError(403, AuthCode.FORBIDDEN)
        return Principal(key_tenant_id, authenticated=True)

    def check(self, authorization: str | None, body_tenant_id: str) -> Principal:
        """``authenticate`` then ``authorize``, for callers that have the body already."""
        return self.authorize(self.authenticate(authorization), body_tenant_id)
