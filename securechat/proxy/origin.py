"""The proxy answers only its own origin: a page on another site must not drive it or read its answers.

Browsers send ``Origin`` with every cross-origin request (and with same-origin ones that are not GET/HEAD);
clients such as the ``openai`` package send none. A request whose ``Origin`` is not this proxy's own
(``http://<its Host header>``) is refused with 403 before anything else runs; that covers the requests a page
could make without asking first (a form post, a multipart upload), not only those CORS would stop.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send


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
