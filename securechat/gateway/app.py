"""FastAPI routes of the gateway. The service object is attached at start-up (``app.state.service``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope

from securechat.errors import ErrorCode
from securechat.gateway.collections import CollectionAdmin
from securechat.gateway.http_errors import STATUS, HTTPError, error_response
from securechat.gateway.openapi import AUTH, BODY, COLLECTION, SEALED, UPSTREAM, errors, stream_answer
from securechat.gateway.schemas import (
    ID_PATTERN,
    DocumentDeletion,
    InferRequest,
    Mode,
    NewCollection,
    SealedOperation,
)
from securechat.gateway.service import GatewayService
from securechat.gateway.transparency import router as transparency_router
from securechat.openapi_docs import json_body
from securechat.tenants.auth import AuthError
from securechat.tenants.oidc import Scope

FRAMES_MEDIA_TYPE = "application/octet-stream"
# What a token must hold for each mode (an API key holds every scope).
MODE_SCOPES: dict[str, tuple[Scope, ...]] = {
    "plain": (Scope.INFER,),
    "rag": (Scope.INFER, Scope.COLLECTIONS_READ),
    "ingest": (Scope.COLLECTIONS_WRITE,),
    "search": (Scope.COLLECTIONS_READ,),
    "embed": (Scope.INFER,),
}
SSE_MEDIA_TYPE = "text/event-stream"
NONCE_PATTERN = r"^[0-9a-f]{32,128}$"


def _service(request: Request) -> GatewayService:
    service: GatewayService = request.app.state.service
    return service


def _validation_fields(error: ValidationError | RequestValidationError) -> list[dict[str, Any]]:
    # Never echo "input" or "ctx": they can hold the prompt.
    return [{"loc": list(item["loc"]), "type": item["type"], "msg": item["msg"]} for item in error.errors()]


class FinishingStreamingResponse(StreamingResponse):
    """A streaming response that always runs ``on_finish`` (idempotent), even if the body never started: a
    client that left before the first byte must not keep its tenant's stream lease or the upstream open."""

    def __init__(self, content: AsyncIterator[bytes], on_finish: Callable[[], Awaitable[None]], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_finish = on_finish

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_finish()


TenantQuery = Annotated[str, Query(pattern=ID_PATTERN)]
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]
Body = TypeVar("Body", bound=BaseModel)


async def _authorized_body(
    request: Request, model: type[Body], needs: Callable[[Body], Iterable[Scope]] | Iterable[Scope] = ()
) -> Body:
    """Authenticate first (an unauthenticated caller learns nothing about limits or input rules), then read the
    JSON body within the size limit, validate it, and match its ``tenant_id`` to the credential's tenant and
    the route's scopes (``needs``, or what it says for this body) to the credential's."""
    request.state.started = time.perf_counter()
    service = _service(request)
    authenticator = service.tenancy.authenticator
    try:
        credential = await service.tenant_calls.authenticate(request.headers.get("authorization"))
    except AuthError as refusal:
        raise HTTPError.refused(refusal) from None
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPError(ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    raw = await _read_body(request, service.settings.gateway.max_envelope_bytes)
    try:
        body = model.model_validate(json.loads(raw))
    except ValueError as exc:  # ValidationError is a ValueError; so is bad JSON
        fields = _validation_fields(exc) if isinstance(exc, ValidationError) else None
        raise HTTPError(ErrorCode.INVALID_REQUEST, fields=fields) from None
    scopes = needs(body) if callable(needs) else needs
    try:
        authenticator.authorize(credential, getattr(body, "tenant_id"), scopes)  # noqa: B009 - every body has one
    except AuthError as refusal:
        raise HTTPError.refused(refusal) from None
    return body


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, counted as it arrives: 413 as soon as it passes ``limit``, whether or not Content-Length said
    so (a chunked body has none), so an oversized body is never held whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(ErrorCode.PAYLOAD_TOO_LARGE, limit=limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPError(ErrorCode.PAYLOAD_TOO_LARGE, limit=limit)
    return bytes(body)


async def _authorize_query(request: Request, tenant_id: str, needs: Iterable[Scope]) -> None:
    request.state.started = time.perf_counter()
    service = _service(request)
    try:
        credential = await service.tenant_calls.authenticate(request.headers.get("authorization"))
        service.tenancy.authenticator.authorize(credential, tenant_id, needs)
    except AuthError as refusal:
        raise HTTPError.refused(refusal) from None


def _infer_scopes(body: InferRequest) -> Iterable[Scope]:
    """What a token needs for this /infer: an answer needs ``infer``, and one from a collection reads it."""
    return MODE_SCOPES[body.mode]


def _collections(request: Request) -> CollectionAdmin:
    collections = _service(request).collections
    if collections is None:
        raise HTTPError(ErrorCode.MODE_NOT_SUPPORTED)
    return collections


async def _stream_answer(request: Request, body: InferRequest, want_sse: bool) -> Response:
    service = _service(request)
    accepted = await service.accept(body, want_plaintext=want_sse)
    headers = {"X-Request-Id": accepted.request_id, "Cache-Control": "no-store"}
    if want_sse:
        stream, media = service.event_stream(accepted), SSE_MEDIA_TYPE
    else:
        stream, media = service.framed_body(accepted), FRAMES_MEDIA_TYPE
    return FinishingStreamingResponse(stream, lambda: service.finish(accepted), media_type=media, headers=headers)


async def _sealed_operation(request: Request, mode: Mode, collection_id: str | None) -> Response:
    """A collection route that runs in a worker: the same path as /infer, in ``mode``, answered as frames."""
    operation = await _authorized_body(request, SealedOperation, MODE_SCOPES[mode])
    body = InferRequest(
        tenant_id=operation.tenant_id,
        mode=mode,
        region=operation.region,
        envelope=operation.envelope,
        collection_id=collection_id,
    )
    return await _stream_answer(request, body, want_sse=False)


class NotReady(BaseModel):
    status: str
    regions_without_ready_worker: list[str]


def create_app() -> FastAPI:
    app = FastAPI(title="SecureChat gateway", version="1")
    sealed_route: dict[str, Any] = {
        "responses": {**stream_answer(FRAMES_MEDIA_TYPE), **errors(SEALED)},
        "openapi_extra": json_body(SealedOperation),
    }

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default body echoes the offending input; ours names the field only.
        return await _on_http_error(request, HTTPError(ErrorCode.INVALID_REQUEST, fields=_validation_fields(error)))

    @app.exception_handler(HTTPError)
    async def _on_http_error(request: Request, error: HTTPError) -> JSONResponse:
        service = _service(request)
        started = getattr(request.state, "started", time.perf_counter())
        service.record_refusal(STATUS[error.code], started)
        return error_response(error, service.settings.gateway.retry_after_s)

    @app.post(
        "/infer",
        response_model=None,
        responses={**stream_answer(FRAMES_MEDIA_TYPE, SSE_MEDIA_TYPE), **errors(SEALED)},
        openapi_extra=json_body(InferRequest),
    )
    async def infer(request: Request) -> Response:
        body = await _authorized_body(request, InferRequest, _infer_scopes)
        return await _stream_answer(request, body, want_sse=SSE_MEDIA_TYPE in request.headers.get("accept", ""))

    @app.post(
        "/v1/collections", status_code=201, responses=errors(BODY, COLLECTION), openapi_extra=json_body(NewCollection)
    )
    async def create_collection(request: Request) -> dict[str, Any]:
        """A new, empty collection of the tenant: an opaque id. Its key is made and kept by the client."""
        body = await _authorized_body(request, NewCollection, [Scope.COLLECTIONS_WRITE])
        return await _collections(request).create(body.tenant_id)

    @app.get("/v1/collections", responses=errors(AUTH, COLLECTION, [ErrorCode.INVALID_REQUEST]))
    async def list_collections(request: Request, tenant_id: TenantQuery) -> dict[str, Any]:
        await _authorize_query(request, tenant_id, [Scope.COLLECTIONS_READ])
        return {"collections": await _collections(request).list_for(tenant_id)}

    @app.delete("/v1/collections/{collection_id}", responses=errors(AUTH, COLLECTION, [ErrorCode.INVALID_REQUEST]))
    async def delete_collection(request: Request, collection_id: IdPath, tenant_id: TenantQuery) -> dict[str, Any]:
        """Every sealed blob of the collection goes (forgetting its key shreds any copy elsewhere)."""
        await _authorize_query(request, tenant_id, [Scope.COLLECTIONS_WRITE])
        await _collections(request).delete(tenant_id, collection_id)
        return {"deleted": collection_id}

    @app.get(
        "/v1/collections/{collection_id}/documents", responses=errors(AUTH, COLLECTION, [ErrorCode.INVALID_REQUEST])
    )
    async def list_documents(request: Request, collection_id: IdPath, tenant_id: TenantQuery) -> dict[str, Any]:
        """The documents (ids, versions, sizes, sealed metadata) and the collection's sealed manifest."""
        await _authorize_query(request, tenant_id, [Scope.COLLECTIONS_READ])
        return await _collections(request).documents(tenant_id, collection_id)

    @app.delete(
        "/v1/collections/{collection_id}/documents/{doc_id}",
        responses=errors(BODY, COLLECTION),
        openapi_extra=json_body(DocumentDeletion),
    )
    async def delete_document(request: Request, collection_id: IdPath, doc_id: IdPath) -> dict[str, Any]:
        """The body carries the tenant and the collection's next manifest, which only the key holder can write."""
        body = await _authorized_body(request, DocumentDeletion, [Scope.COLLECTIONS_WRITE])
        await _collections(request).delete_document(body.tenant_id, collection_id, doc_id, body.manifest)
        return {"deleted": doc_id}

    @app.post("/v1/collections/{collection_id}/documents", response_model=None, **sealed_route)
    async def add_documents(request: Request, collection_id: IdPath) -> Response:
        """Ingest: the envelope holds the documents and the collection key, sealed for the workers."""
        return await _sealed_operation(request, "ingest", collection_id)

    @app.post("/v1/collections/{collection_id}/search", response_model=None, **sealed_route)
    async def search(request: Request, collection_id: IdPath) -> Response:
        return await _sealed_operation(request, "search", collection_id)

    @app.post("/v1/embeddings", response_model=None, **sealed_route)
    async def embeddings(request: Request) -> Response:
        return await _sealed_operation(request, "embed", None)

    @app.get("/v1/workers", responses=errors(UPSTREAM))
    async def workers(request: Request) -> dict[str, Any]:
        """Each region's live workers: id, state, platform (what attests it), key ids. No secrets."""
        service = _service(request)
        regions: dict[str, list[dict[str, Any]]] = {}
        for region in service.settings.region_names:
            described = await service.keys.workers(region)
            regions[region] = [
                {
                    "worker_id": w["worker_id"],
                    "region": w["region"],
                    "state": w.get("state"),
                    "platform": w.get("platform"),
                    "key_ids": [key["key_id"] for key in w["keys"]],
                }
                for w in described
            ]
        return {"regions": regions}

    @app.get("/v1/keys", responses=errors(UPSTREAM, [ErrorCode.UNKNOWN_REGION, ErrorCode.INVALID_REQUEST]))
    async def keys(request: Request, region: str) -> dict[str, Any]:
        """Public keys a client seals to (unverified here; attestation is the verified path)."""
        service = _service(request)
        if region not in service.settings.region_names:
            raise HTTPError(ErrorCode.UNKNOWN_REGION)
        return {"region": region, "workers": await service.keys.workers(region)}

    @app.get(
        "/v1/attestation",
        responses=errors(UPSTREAM, [ErrorCode.UNKNOWN_REGION, ErrorCode.INVALID_REQUEST, ErrorCode.RATE_LIMITED]),
    )
    async def attestation(
        request: Request,
        nonce: Annotated[str, Query(pattern=NONCE_PATTERN, description="verifier's fresh nonce, hex")],
        region: str | None = None,
    ) -> dict[str, Any]:
        """Attestation documents of the live workers (of ``region``, or of every region), each bound to
        ``nonce``. Verify them, then seal only to the keys they attest. Rate-limited: 429 with Retry-After."""
        service = _service(request)
        if region is not None and region not in service.settings.region_names:
            raise HTTPError(ErrorCode.UNKNOWN_REGION)
        regions = [region] if region is not None else list(service.settings.region_names)
        documents = await service.attestations(regions, nonce)
        return {"region": region, "nonce": nonce, "documents": documents}

    app.include_router(transparency_router)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the gateway answers. Whether requests can be served is /readyz."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=None, responses={503: {"model": NotReady, "description": "not ready"}})
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: 200 once every region has a serving worker, else 503 naming the regions without one."""
        service = _service(request)
        waiting = await service.readiness()
        if waiting:
            retry_after = str(service.settings.gateway.retry_after_s)
            body = {"status": "not_ready", "regions_without_ready_worker": waiting}
            return JSONResponse(body, status_code=503, headers={"Retry-After": retry_after})
        return JSONResponse({"status": "ready", "regions": list(service.settings.region_names)})

    return app
