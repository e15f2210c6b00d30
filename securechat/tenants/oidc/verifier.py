"""Turning a bearer JWT into a tenant and scopes, or a refusal with its reason.

In order: the size; the header (a key id, an allowed asymmetric algorithm); the issuer, read unverified only to
pick its settings and keys; the key, by id, from that issuer's published set (its type must fit the algorithm);
the signature and the registered claims with PyJWT (``exp`` required, ``nbf`` and ``iat`` checked, leeway
``leeway_s``, ``aud`` and ``iss`` exact); the tenant claim, which must name a tenant this issuer may vouch for;
the scopes. Every refusal names its reason (``TokenRefused.reason``); no token text, claim or key id is ever
logged or answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import jwt

from securechat.logs import get_logger, log_event
from securechat.tenants.oidc.issuers import IssuerSettings, Scope
from securechat.tenants.oidc.jwks import Fetch, JwksCache, fetch_json

logger = get_logger("tenants.oidc")

MAX_TOKEN_CHARS: Final = 8192


class TokenRefused(Exception):
    """``reason`` names what is wrong; 401 (``invalid_token``) unless ``status`` says 403."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    tenant_id: str
    scopes: frozenset[Scope]


def looks_like_jwt(token: str) -> bool:
    """Three base64url parts: a JWT (an API key is ``sc_<id>_<secret>``)."""
    return token.count(".") == 2 and token.startswith("eyJ")


class TokenVerifier:
    def __init__(
        self, issuers: Sequence[IssuerSettings], fetch: Fetch = fetch_json, clock: Callable[[], float] = time.time
    ) -> None:
        self._issuers = {settings.issuer: JwksCache(settings, fetch) for settings in issuers}
        self._clock = clock

    def cache(self, issuer: str) -> JwksCache:
        return self._issuers[issuer]

    def verify(self, token: str) -> VerifiedToken:
        try:
            return self._verify(token)
        except TokenRefused as refused:
            log_event(logger, "token_refused", status_code=refused.status, reason=refused.reason)
            raise

    def _verify(self, token: str) -> VerifiedToken:
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused("token_too_large")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise TokenRefused("malformed") from None
        issuer = unverified.get("iss")
        cache = self._issuers.get(issuer) if isinstance(issuer, str) else None
        if cache is None:
            raise TokenRefused("unknown_issuer")
        settings = cache.settings
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in settings.algorithms:
            raise TokenRefused("algorithm_not_allowed")
        if not isinstance(kid, str):
            raise TokenRefused("unknown_key")
        key = cache.key(kid)  # IssuerUnavailable goes to the caller: 503
        if key is None:
            raise TokenRefused("unknown_key")
        if key.algorithm_name != algorithm:
            raise TokenRefused("algorithm_not_allowed")  # the key is of another kind than the token says
        claims = self._decode(token, key, settings)
        tenant_id = claims.get(settings.tenant_claim)
        if not isinstance(tenant_id, str) or not tenant_id:
            raise TokenRefused("missing_tenant_claim")
        if tenant_id not in settings.tenants:
            raise TokenRefused("tenant_not_allowed", status=403)
        return VerifiedToken(tenant_id, settings.scopes(claims.get(settings.scope_claim)))

    def _decode(self, token: str, key: jwt.PyJWK, settings: IssuerSettings) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[key.algorithm_name],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_s,
                options={"require": ["exp", "iss", "aud"], "verify_iat": True},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused("expired") from None
        except jwt.ImmatureSignatureError as exc:  # PyJWT says which claim: nbf, or iat in the future
            raise TokenRefused("issued_in_the_future" if "(iat)" in str(exc) else "not_yet_valid") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused("wrong_audience") from None
        except jwt.InvalidIssuedAtError:
            raise TokenRefused("issued_in_the_future") from None
        except jwt.MissingRequiredClaimError:
            raise TokenRefused("missing_claim") from None
        except jwt.InvalidSignatureError:
            raise TokenRefused("bad_signature") from None
        except jwt.PyJWTError:
            raise TokenRefused("malformed") from None
        return claims
