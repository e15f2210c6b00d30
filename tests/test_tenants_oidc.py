"""Tokens from a real issuer process (``tests/oidc_issuer.py``: discovery and JWKS over HTTP): each algorithm
verifies, every forgery and every bad claim is refused by name, keys rotate, made-up key ids do not become a
flood of fetches, and the keys last fetched stay in use while the issuer is down."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from securechat.tenants.oidc import IssuerSettings, IssuerUnavailable, Scope, TokenRefused, TokenVerifier
from tests.oidc_harness import AUDIENCE, LocalIssuer


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    local = LocalIssuer(tmp_path_factory.mktemp("issuer")).start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def keys(issuer: LocalIssuer) -> dict[str, str]:
    return {algorithm: issuer.add_key(algorithm) for algorithm in ("RS256", "ES256", "EdDSA")}


def verifier(issuer: LocalIssuer, **overrides: Any) -> TokenVerifier:
    return TokenVerifier([IssuerSettings.model_validate(issuer.settings(**overrides))])


def refusal(verify: TokenVerifier, token: str) -> tuple[str, int]:
    with pytest.raises(TokenRefused) as refused:
        verify.verify(token)
    return refused.value.reason, refused.value.status


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_each_algorithm_verifies(issuer: LocalIssuer, keys: dict[str, str], algorithm: str) -> None:
    verified = verifier(issuer).verify(issuer.token(keys[algorithm], scope="infer collections:read"))
    assert verified.tenant_id == "tenant1" and verified.scopes == {Scope.INFER, Scope.COLLECTIONS_READ}


def test_scopes_map_and_admin_holds_all(issuer: LocalIssuer, keys: dict[str, str]) -> None:
    mapped = verifier(issuer, scope_map={"chat.use": "infer"})
    assert mapped.verify(issuer.token(keys["ES256"], scope="chat.use other")).scopes == {Scope.INFER}
    assert verifier(issuer).verify(issuer.token(keys["ES256"], scope="admin")).scopes == set(Scope)
    listed = issuer.token(keys["ES256"], scope="", scp=["infer"])
    assert verifier(issuer, scope_claim="scp").verify(listed).scopes == {Scope.INFER}


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_bad_claims_are_refused_by_name(issuer: LocalIssuer, keys: dict[str, str]) -> None:
    verify = verifier(issuer)
    es = keys["ES256"]
    now = int(time.time())
    cases = {
        "expired": issuer.token(es, exp=now - 3600),
        "not_yet_valid": issuer.token(es, nbf=now + 3600),
        "issued_in_the_future": issuer.token(es, iat=now + 3600),
        "wrong_audience": issuer.token(es, aud="another-service"),
        "missing_tenant_claim": issuer.token(es, tenant=None),
        "missing_claim": jwt.encode(
            {"iss": issuer.url, "aud": AUDIENCE, "tenant": "tenant1"}, issuer._private[es][1], "ES256", {"kid": es}
        ),
        "unknown_issuer": issuer.token(es, iss="https://idp.example.com"),
    }
    for reason, token in cases.items():
        assert refusal(verify, token) == (reason, 401), reason
    assert refusal(verify, issuer.token(es, tenant="tenant2")) == ("tenant_not_allowed", 403)
    assert verifier(issuer, leeway_s=60).verify(issuer.token(es, exp=now - 30)).tenant_id == "tenant1"  # skew


def test_forged_tokens_are_refused_by_name(issuer: LocalIssuer, keys: dict[str, str]) -> None:
    verify = verifier(issuer)
    es, rs = keys["ES256"], keys["RS256"]
    good = issuer.token(es)
    header, payload, signature = _segments(good)
    public_pem = (
        issuer._private[rs][1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = jwt.decode(good, options={"verify_signature": False})
    another_key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        # alg none: no signature at all
        "algorithm_not_allowed": f"{_b64({'alg': 'none', 'kid': es})}.{payload}.",
        # algorithm confusion: HS256 with the issuer's RSA public key as the HMAC secret
        "hs256 with the public key": _hs256(claims, public_pem, rs),
        # the header says RS256 but the key id is an EC key's
        "kid of another key type": f"{_b64({'alg': 'RS256', 'kid': es, 'typ': 'JWT'})}.{payload}.{signature}",
        # a payload changed after signing
        "bad_signature": f"{header}.{_b64({**claims, 'tenant': 'tenant1', 'scope': 'admin'})}.{signature}",
        # re-signed with a key the issuer never published, under its key id
        "resigned": jwt.encode(claims, another_key, "ES256", {"kid": es}),
        # a key id that is not the issuer's
        "unknown_key": issuer.token(es) and jwt.encode(claims, another_key, "ES256", {"kid": "someone-elses"}),
        "token_too_large": issuer.token(es, padding="x" * 9000),
        "malformed": "eyJ.not-a-token.at-all",
    }
    expected = {
        "algorithm_not_allowed": "algorithm_not_allowed",
        "hs256 with the public key": "algorithm_not_allowed",
        "kid of another key type": "algorithm_not_allowed",
        "bad_signature": "bad_signature",
        "resigned": "bad_signature",
        "unknown_key": "unknown_key",
        "token_too_large": "token_too_large",
        "malformed": "malformed",
    }
    for name, token in cases.items():
        assert refusal(verify, token) == (expected[name], 401), name


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    header = _b64({"alg": "HS256", "kid": kid, "typ": "JWT"})
    payload = _b64(claims)
    import hashlib
    import hmac

    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def test_rotation_and_no_flood_of_fetches(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path).start()
    try:
        first = issuer.add_key("ES256")
        verify = verifier(issuer, min_refresh_interval_s=60, jwks_ttl_s=600)
        assert verify.verify(issuer.token(first)).tenant_id == "tenant1"
        assert issuer.jwks_fetches() == 1
        second = issuer.add_key("EdDSA")  # the issuer rotates: a new key, the old one still published
        assert verify.verify(issuer.token(second)).tenant_id == "tenant1"  # unknown id: one refetch
        assert issuer.jwks_fetches() == 2
        for _ in range(50):  # made-up key ids within the interval: refused, no fetch
            forged = jwt.encode(
                {"iss": issuer.url}, ec.generate_private_key(ec.SECP256R1()), "ES256", {"kid": "made-up"}
            )
            assert refusal(verify, forged)[0] == "unknown_key"
        assert issuer.jwks_fetches() == 2
        issuer.remove_key(first)  # retired: gone once the keys are refetched
        eager = verifier(issuer, min_refresh_interval_s=0, jwks_ttl_s=1)
        assert eager.verify(issuer.token(second)).tenant_id == "tenant1"
        assert refusal(eager, issuer.token(first)) == ("unknown_key", 401)
    finally:
        issuer.stop()


def test_cached_keys_serve_while_the_issuer_is_down(tmp_path: Path) -> None:
    issuer = LocalIssuer(tmp_path).start()
    kid = issuer.add_key("RS256")
    verify = verifier(issuer, jwks_ttl_s=1, min_refresh_interval_s=0)
    assert verify.verify(issuer.token(kid)).tenant_id == "tenant1"
    token = issuer.token(kid)
    issuer.stop()
    time.sleep(1.1)  # the keys are stale; the refetch fails; the stale keys still verify
    assert verify.verify(token).tenant_id == "tenant1"
    with pytest.raises(IssuerUnavailable):  # a gateway that never had the keys cannot verify at all
        verifier(issuer).verify(token)


def test_only_https_issuers_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="https"):
        IssuerSettings(issuer="http://idp.example.com", audience="a", tenants=("t",))
    IssuerSettings(issuer="https://idp.example.com", audience="a", tenants=("t",))
    with pytest.raises(ValueError):
        IssuerSettings(issuer="https://idp.example.com", audience="a", tenants=("t",), algorithms=("HS256",))  # type: ignore[arg-type]
    assert rsa  # RSA keys are exercised above
