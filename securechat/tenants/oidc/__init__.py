"""Tenants from identity providers: JWTs (OIDC access tokens) verified against each issuer's published keys."""

from securechat.tenants.oidc.issuers import IssuerSettings, Scope
from securechat.tenants.oidc.jwks import IssuerUnavailable, JwksCache
from securechat.tenants.oidc.verifier import TokenRefused, TokenVerifier, looks_like_jwt

__all__ = [
    "IssuerSettings",
    "IssuerUnavailable",
    "JwksCache",
    "Scope",
    "TokenRefused",
    "TokenVerifier",
    "looks_like_jwt",
]
