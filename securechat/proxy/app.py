"""The local OpenAI-compatible proxy: every request is verified, sealed and decrypted by the SDK.

Point any OpenAI client at ``http://127.0.0.1:8080/v1``. Plaintext exists only in this process (and in the
attested worker). The sync SDK runs in the thread pool; its checked text pieces are relayed as server-sent
events as they arrive. Only loopback Host headers are accepted by default, so a web page cannot reach the proxy
through DNS rebinding, and only ``application/json`` bodies, so a cross-site form post cannot either.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from securechat.client import ClientError, CompletionStream, InvalidCiphertext, ResponseFailed, SecureChatClient
from securechat.client.keyring import KeyringError
from securechat.logs import get_logger, log_event
from securechat.proxy import schemas
from securechat.proxy.errors import ProxyError, ProxyRefusal, from_exception, invalid_request
from securechat.proxy.origin import LOOPBACK_HOSTS, SameOriginOnly
from securechat.proxy.page import page_router
from securechat.proxy.vector_stores import vector_store_router

logger = get_logger("proxy")

MAX_BODY_BYTES = 4 << 20
SDK_ERRORS = (ClientError, InvalidCiphertext, ResponseFailed)

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
    app.include_router(vector_store_router(shared.get))
    app.include_router(page_router(shared.get))  # the chat page at /

    @app.exception_handler(ProxyRefusal)
    async def _on_refusal(_: Request, refusal: ProxyRefusal) -> JSONResponse:
        return refusal.error.response()

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse(schemas.models_list())

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        try:
            parsed = _parse(await request.body(), request.headers.get("content-type", ""))
        except ProxyRefusal as refusal:
            return refusal.error.response()
        try:
            client = await run_in_threadpool(shared.get)
            open_stream = partial(client.open_stream, parsed.chat_messages(), **parsed.retrieval(), **parsed.sampling())
            opened = await run_in_threadpool(open_stream)
        except KeyringError as missing:
            return ProxyError(404, "invalid_request_error", "not_found", str(missing), "vector_store_ids").response()
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        if parsed.stream:
            include_usage = parsed.stream_options is not None and parsed.stream_options.include_usage
            cite = _citer(client, parsed.vector_store_ids)
            events = _sse(opened, include_usage, cite)
            headers = {"Cache-Control": "no-store", "X-Request-Id": opened.request_id}
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        try:
            completion = await run_in_threadpool(opened.read)
            citations = await run_in_threadpool(_citer(client, parsed.vector_store_ids), completion.citations)
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        finally:
            opened.close()
        e2e_ms = round((time.perf_counter() - started) * 1000, 1)
        log_event(logger, "proxy_completion", request_id=completion.request_id, e2e_ms=e2e_ms)
        body = schemas.completion_object(completion.request_id, completion.text, completion.metrics, citations)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return app


def _parse(raw: bytes, content_type: str) -> schemas.ChatCompletionRequest:
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise ProxyRefusal(invalid_request("send Content-Type: application/json", status=415))
    if len(raw) > MAX_BODY_BYTES:
        raise ProxyRefusal(invalid_request("the request body is too large", status=413))
    try:
        parsed = schemas.ChatCompletionRequest.model_validate_json(raw)
        parsed.check_supported()
    except ValidationError as exc:
        first = exc.errors()[0]  # name the field, never echo the input (it may hold the prompt)
        param = ".".join(str(part) for part in first["loc"]) or None
        raise ProxyRefusal(invalid_request(f"invalid request: {first['msg']}", param)) from None
    except schemas.UnsupportedParameter as unsupported:
        status = 404 if unsupported.param == "model" else 400
        code = "model_not_found" if unsupported.param == "model" else "unsupported_parameter"
        raise ProxyRefusal(
            ProxyError(status, "invalid_request_error", code, str(unsupported), unsupported.param)
        ) from None
    return parsed


Citer = Callable[[list[dict[str, object]]], list[dict[str, object]] | None]


def _citer(client: SecureChatClient, vector_store_ids: list[str] | None) -> Citer:
    """Citations in OpenAI's terms (file ids and names, opened locally), or None for a chat without files."""

    def cite(citations: list[dict[str, object]]) -> list[dict[str, object]] | None:
        if not vector_store_ids:
            return None
        names = {d.doc_id: d.filename for d in client.collections.documents(vector_store_ids[0])}
        return [
            {
                "n": c["n"],
                "file_id": c["doc_id"],
                "filename": names.get(str(c["doc_id"]), ""),
                "chunk_index": c["chunk_index"],
                "score": c["score"],
            }
            for c in citations
        ]

    return cite


async def _sse(opened: CompletionStream, include_usage: bool, cite: Citer) -> AsyncIterator[bytes]:
    """OpenAI's stream: a role chunk, one chunk per checked text piece, a finish chunk (with the citations of a
    file-search chat), [DONE]. A failure after the 200 went out becomes an ``error`` event (OpenAI clients raise
    on it) and the stream ends without [DONE]."""
    created = int(time.time())
    request_id = opened.request_id
    yield _event(schemas.chunk_object(request_id, created, {"role": "assistant", "content": ""}))
    try:
        async for piece in iterate_in_threadpool(iter(opened)):
            if piece:
                yield _event(schemas.chunk_object(request_id, created, {"content": piece}))
    except SDK_ERRORS as exc:
        log_event(logger, "proxy_stream_failed", request_id=request_id, reason=type(exc).__name__)
        yield _event(from_exception(exc).body())
        return
    finally:
        opened.close()  # also when the caller hung up: closing the upstream cancels the generation
    metrics = opened.metrics or {}
    finish = schemas.finish_reason(metrics)
    final_chunk = schemas.chunk_object(request_id, created, {}, finish)
    try:
        raw = opened.final.extra.get("citations") if opened.final is not None else None
        citations = await run_in_threadpool(cite, raw if isinstance(raw, list) else [])
    except SDK_ERRORS as exc:
        yield _event(from_exception(exc).body())
        return
    if citations is not None:
        final_chunk["citations"] = citations
    yield _event(final_chunk)
    if include_usage:
        yield _event(schemas.chunk_object(request_id, created, {}, usage_body=schemas.usage(metrics)))
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, object]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
