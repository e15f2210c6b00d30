"""The local OpenAI-compatible proxy: every request is verified, sealed and decrypted by the SDK.

Point any OpenAI client at ``http://127.0.0.1:8080/v1``: chat completions (``chat.py``), the Responses API
(``responses.py``), text completions (``completions.py``), vector stores, files and embeddings
(``vector_stores.py``). Plaintext exists only in this process (and in the attested worker). The sync SDK runs
in the thread pool; its checked pieces are relayed as server-sent events as they arrive. Only loopback Host
headers are accepted by default, so a web page cannot reach the proxy through DNS rebinding, and only
``application/json`` bodies, so a cross-site form post cannot either.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from securechat.client import SecureChatClient
from securechat.proxy.chat import chat_router
from securechat.proxy.completions import completions_router
from securechat.proxy.errors import ProxyError, ProxyRefusal, invalid_request
from securechat.proxy.openai_common import models_list
from securechat.proxy.origin import LOOPBACK_HOSTS, SameOriginOnly
from securechat.proxy.page import page_router
from securechat.proxy.responses import responses_router
from securechat.proxy.vector_stores import vector_store_router

ClientFactory = Callable[[], SecureChatClient]


class _SharedClient:
    """One SDK client for the app's life (all requests share its verified key cache), made on first use."""

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._client: SecureChatClient | None = None
        self._lock = threading.Lock()

    def get(self) -> SecureChatClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def create_proxy_app(client_factory: ClientFactory, *, allowed_hosts: Sequence[str] = LOOPBACK_HOSTS) -> FastAPI:
    shared = _SharedClient(client_factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        shared.close()

    app = FastAPI(title="SecureChat local proxy", version="1", lifespan=lifespan)
    app.add_middleware(SameOriginOnly)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.include_router(chat_router(shared.get))
    app.include_router(completions_router(shared.get))
    app.include_router(responses_router(shared.get))
    app.include_router(vector_store_router(shared.get))
    app.include_router(page_router(shared.get))  # the chat page at /

    @app.exception_handler(ProxyRefusal)
    async def _on_refusal(_: Request, refusal: ProxyRefusal) -> JSONResponse:
        return refusal.error.response()

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # OpenAI's shape, naming the field and never echoing its value (FastAPI's default body does).
        first = error.errors()[0]
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return invalid_request(f"invalid request: {first['msg']}", param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        # Starlette's own refusals (a malformed multipart body, an unknown route) in OpenAI's shape too.
        kind = "invalid_request_error" if error.status_code < 500 else "api_error"
        return ProxyError(error.status_code, kind, "invalid_request", str(error.detail)).response()

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse(models_list())

    return app
