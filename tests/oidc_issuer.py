"""A local OpenID Connect issuer for the tests: ``python -m tests.oidc_issuer --port P --keys DIR``.

Serves what a gateway fetches from an identity provider: the discovery document
(``/.well-known/openid-configuration``) and the signing keys (``/jwks.json``): every ``*.jwk.json`` file in
``DIR``, read on each request, so a test rotates keys by writing and removing files. ``/stats`` says how often
the keys were fetched (the gateway must not fetch them once per token). Tokens are minted by the test itself
with the private halves (``tests/oidc_harness.py``), as an identity provider's login would.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def serve(port: int, keys: Path) -> None:
    issuer = f"http://127.0.0.1:{port}"
    fetches = {"jwks": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                body = {
                    "issuer": issuer,
                    "jwks_uri": f"{issuer}/jwks.json",
                    "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
                }
            elif self.path == "/jwks.json":
                with lock:
                    fetches["jwks"] += 1
                body = {"keys": [json.loads(path.read_text()) for path in sorted(keys.glob("*.jwk.json"))]}
            elif self.path == "/stats":
                body = {"jwks_fetches": fetches["jwks"]}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    args = parser.parse_args()
    serve(args.port, args.keys)


if __name__ == "__main__":
    main()
