"""A local identity provider for the tests: ``tests/oidc_issuer.py`` in its own process, keys the test holds
(and rotates), and tokens minted with them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from deployments.local import free_port

ROOT = Path(__file__).resolve().parents[1]
AUDIENCE = "securechat-tests"


class LocalIssuer:
    def __init__(self, directory: Path) -> None:
        self.keys_dir = directory / "keys"
        self.keys_dir.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._private: dict[str, tuple[str, Any]] = {}  # kid -> (algorithm, private key)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalIssuer:
        command = [sys.executable, "-m", "tests.oidc_issuer", "--port", str(self.port), "--keys", str(self.keys_dir)]
        self._process = subprocess.Popen(command, cwd=ROOT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("the local issuer did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def add_key(self, algorithm: str = "ES256") -> str:
        """A new signing key, published at once; returns its key id."""
        kid = uuid.uuid4().hex[:16]
        private: Any = {
            "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate,
        }[algorithm]()
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[algorithm].to_jwk(private.public_key()))
        jwk.update(kid=kid, use="sig", alg=algorithm)
        (self.keys_dir / f"{kid}.jwk.json").write_text(json.dumps(jwk))
        self._private[kid] = (algorithm, private)
        return kid

    def remove_key(self, kid: str) -> None:
        (self.keys_dir / f"{kid}.jwk.json").unlink()

    def token(self, kid: str, tenant: str | None = "tenant1", scope: str = "infer", **claims: Any) -> str:
        algorithm, private = self._private[kid]
        now = int(time.time())
        payload: dict[str, Any] = {"iss": self.url, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300}
        if tenant is not None:
            payload["tenant"] = tenant
        if scope:
            payload["scope"] = scope
        payload.update(claims)
        return jwt.encode(payload, private, algorithm=algorithm, headers={"kid": kid})

    def jwks_fetches(self) -> int:
        return int(httpx.get(f"{self.url}/stats", timeout=5).json()["jwks_fetches"])

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """``auth.issuers[]`` for this issuer (tenant1 only)."""
        return {"issuer": self.url, "audience": AUDIENCE, "tenants": ["tenant1"], **overrides}
