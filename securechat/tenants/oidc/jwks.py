"""An issuer's signing keys, fetched from its published JWKS and cached.

The keys are fetched on first use (the JWKS URI from the discovery document, whose ``issuer`` must be the
configured one), kept ``jwks_ttl_s``, and refetched early when a token names a key id the cache does not hold
(the issuer rotated its keys) but at most once per ``min_refresh_interval_s``, so made-up key ids cannot make
the gateway hammer the issuer. When the issuer cannot be reached, the keys last fetched stay in use; with none
ever fetched, verification is impossible and the caller answers 503 (``IssuerUnavailable``). Keys are checked
as they come in: signing keys only, of a type that matches an allowed algorithm.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
import jwt

from securechat.logs import get_logger, log_event
from securechat.tenants.oidc.issuers import IssuerSettings, checked_url

logger = get_logger("tenants.oidc")

MAX_DOCUMENT_BYTES: Final = 1 << 20
FETCH_TIMEOUT_S: Final = 5.0
# The key type each algorithm needs: a token's alg and its key's type must agree (no algorithm confusion).
KEY_TYPES: Final = {"RS256": ("RSA", None), "ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}

Fetch = Callable[[str], Mapping[str, Any]]


class IssuerUnavailable(Exception):
    """No keys of the issuer are at hand and it cannot be reached (content-free)."""


def fetch_json(url: str) -> Mapping[str, Any]:
    """GET ``url`` as a JSON object, bounded in size and time (raises on anything else)."""
    with httpx.Client(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as client, client.stream("GET", url) as answer:
        answer.raise_for_status()
        body = bytearray()
        for chunk in answer.iter_bytes():
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise ValueError("document too large")
    document = httpx.Response(200, content=bytes(body)).json()
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document


class JwksCache:
    def __init__(
        self, settings: IssuerSettings, fetch: Fetch = fetch_json, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._failed_at: float | None = None  # last failed fetch, until one succeeds
        self._unknown_at: float | None = None  # last fetch an unknown key id asked for
        self._jwks_uri = settings.jwks_uri
        self._lock = threading.Lock()
        self.fetches = 0  # JWKS fetches made (tests count them)

    def key(self, kid: str) -> jwt.PyJWK | None:
        """The signing key ``kid``, refetching the set when it is stale or the id unknown (rate-limited);
        None for a key the issuer does not publish. IssuerUnavailable when no keys can be had at all."""
        with self._lock:
            now = self._clock()
            interval = self.settings.min_refresh_interval_s
            stale = self._fetched_at is None or now - self._fetched_at >= self.settings.jwks_ttl_s
            # After a failed fetch, wait an interval before the next try: a down issuer costs one timeout per
            # interval, not one per request.
            may_try = self._failed_at is None or now - self._failed_at >= interval
            if stale and may_try:
                self._refresh(now)
            elif kid not in self._keys and may_try and (self._unknown_at is None or now - self._unknown_at >= interval):
                self._unknown_at = now  # an unknown id refetches at most once per interval
                self._refresh(now)
            if self._fetched_at is None:
                raise IssuerUnavailable()
            return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        try:
            if self._jwks_uri is None:
                self._jwks_uri = self._discover()
            self.fetches += 1
            self._keys = self._signing_keys(self._fetch(self._jwks_uri))
            self._fetched_at, self._failed_at = now, None
        except Exception as exc:  # the issuer is down or answers nonsense: keep the keys we had
            self._failed_at = now
            log_event(logger, "jwks_fetch_failed", issuer=_host(self.settings.issuer), reason=type(exc).__name__)

    def _discover(self) -> str:
        document = self._fetch(self.settings.discovery_url)
        if document.get("issuer") != self.settings.issuer or not isinstance(document.get("jwks_uri"), str):
            raise ValueError("the discovery document is not this issuer's")
        return checked_url(document["jwks_uri"])

    def _signing_keys(self, document: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise ValueError("not a JWKS")
        usable: dict[str, jwt.PyJWK] = {}
        for entry in keys:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
                continue
            algorithm = _algorithm_of(entry, self.settings.algorithms)
            if algorithm is None:
                continue
            try:
                usable[entry["kid"]] = jwt.PyJWK(entry, algorithm=algorithm)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
        return usable


def _algorithm_of(entry: Mapping[str, Any], allowed: tuple[str, ...]) -> str | None:
    """The one allowed algorithm this JWK can verify (its ``alg`` if it names one), or None."""
    for algorithm in allowed:
        kty, crv = KEY_TYPES[algorithm]
        fits = entry.get("kty") == kty and (crv is None or entry.get("crv") == crv)
        if fits and entry.get("alg") in (None, algorithm):
            return algorithm
    return None


def _host(url: str) -> str:
    """What a log line may say about an issuer: its host (config, not tenant content)."""
    return httpx.URL(url).host
