"""The proxy answers only its own origin and names: a page on another site must not drive it or read answers.

``allowed_hosts`` decides which ``Host`` headers are served: the loopback names when the proxy is bound to
loopback, else exactly the address it is bound to and the names given on the command line. A proxy that took
any ``Host`` could be driven by a DNS-rebinding page (a name of the attacker's that resolves to the proxy).

Browsers send ``Origin`` with every cross-origin request (and with same-origin ones that are not GET/HEAD);
clients such as the ``openai`` package send none. A request whose ``Origin`` is not this proxy's own
(``http://<its Host header>``) is refused with 403 before anything else runs; that covers the requests a page
could make without asking first (a form post, a multipart upload), not only those CORS would stop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "::1", "[::1]")
LOOPBACK_BINDS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_BINDS: Final = frozenset({"0.0.0.0", "::", ""})


def allowed_hosts(bind_host: str, names: Sequence[str] = ()) -> list[str]:
    """The ``Host`` values to serve for a proxy bound to ``bind_host``, with the extra ``names`` clients use.

    Empty means none would be served (a wildcard bind without names): the caller refuses to start."""
    if bind_host in LOOPBACK_BINDS:
        return [*LOOPBACK_HOSTS, *names]
    bound = [] if bind_host in WILDCARD_BINDS else [f"[{bind_host}]" if ":" in bind_host else bind_host]
    return [*bound, *names]


class SameOriginOnly:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
            origin = headers.get("origin")
            if origin is not None and origin != f"http://{headers.get('host', '')}":
                body = json.dumps(
                    {
                        "error": {
                            "message": "cross-origin requests are refused",
                            "type": "permission_error",
                            "param": None,
                            "code": "cross_origin",
                        }
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 403,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
