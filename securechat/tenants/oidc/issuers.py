"""``auth.issuers`` in the app config: which identity providers may vouch for which tenants, and how.

Each issuer is bound to the tenants it may name: a company's identity provider signs in that company's users
and no one else's, so a token from one issuer that names another issuer's tenant is refused. Scopes come from
a claim (``scope``, space-separated, or a list), optionally renamed with ``scope_map``; they decide what a
token may do (``Scope``). Only asymmetric algorithms are accepted: never ``none``, never an HMAC, so a public
key can never be used as a shared secret.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from securechat.tenants.ids import is_id

Algorithm = Literal["RS256", "ES256", "EdDSA"]
ALGORITHMS: Final[tuple[Algorithm, ...]] = ("RS256", "ES256", "EdDSA")
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def checked_url(value: str) -> str:
    """``value`` if it is an https URL (or http on loopback, for development); ValueError otherwise."""
    parts = urlsplit(value)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ValueError("issuers and their keys are at https URLs (http only on loopback, for development)")
    return value


class Scope(StrEnum):
    """What a caller may do. An API key may do everything its tenant may; a token, what its scopes say."""

    INFER = "infer"  # /infer (plain), embeddings
    COLLECTIONS_READ = "collections:read"  # list collections and documents, search, answer from a collection
    COLLECTIONS_WRITE = "collections:write"  # create and delete collections, add and delete documents
    ADMIN = "admin"  # all of the above


ALL_SCOPES: Final = frozenset(Scope)


class IssuerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str  # the ``iss`` of its tokens, and where its discovery document lives
    audience: str = Field(min_length=1)  # the ``aud`` its tokens must carry for this service
    tenants: tuple[str, ...] = Field(min_length=1)  # the tenants it may name
    tenant_claim: str = "tenant"  # the claim that names the tenant
    algorithms: tuple[Algorithm, ...] = ALGORITHMS
    scope_claim: str = "scope"  # space-separated string, or a list of strings
    scope_map: dict[str, Scope] = Field(default_factory=dict)  # the issuer's scope names -> ours
    leeway_s: int = Field(default=30, ge=0, le=300)  # clock skew allowed on exp, nbf and iat
    jwks_uri: str | None = None  # else read from the discovery document
    jwks_ttl_s: float = Field(default=600.0, ge=1, le=86_400)  # keys are refetched after this long
    # An unknown key id refetches the keys at most this often: a flood of made-up ids is not a flood of fetches.
    min_refresh_interval_s: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("issuer", "jwks_uri")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return None if value is None else checked_url(value)

    @field_validator("tenants")
    @classmethod
    def _tenant_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not all(is_id(tenant) for tenant in value):
            raise ValueError("tenants are tenant ids (short identifiers)")
        return value

    @model_validator(mode="after")
    def _algorithms(self) -> IssuerSettings:
        if not self.algorithms:
            raise ValueError("name at least one algorithm")
        return self

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    def scopes(self, claim: object) -> frozenset[Scope]:
        """Our scopes for the token's scope claim (names neither ours nor mapped are ignored)."""
        names = claim.split() if isinstance(claim, str) else claim if isinstance(claim, list) else []
        scopes: set[Scope] = set()
        for name in names:
            if not isinstance(name, str):
                continue
            if name in self.scope_map:
                scopes.add(self.scope_map[name])
            elif name in ALL_SCOPES:
                scopes.add(Scope(name))
        return frozenset(ALL_SCOPES if Scope.ADMIN in scopes else scopes)
