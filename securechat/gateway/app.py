"""FastAPI routes of the gateway. The service object is attached at start-up (``app.state.service``)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from securechat.errors import ErrorCode
from securechat.gateway.http_errors import STATUS, HTTPError, error_response
from securechat.gateway.schemas import InferRequest
from securechat.gateway.service import GatewayService
from securechat.tenants.auth import AuthError

FRAMES_MEDIA_TYPE = "application/octet-stream"
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_finish()


def create_app() -> FastAPI:
    app = FastAPI(title="SecureChat gateway", version="1")

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

    @app.post("/infer", response_model=None)
    async def infer(request: Request) -> Response:
        request.state.started = time.perf_counter()
        service = _service(request)
        authenticator = service.tenancy.authenticator
        try:  # before anything else: an unauthenticated caller learns nothing about limits or input rules
            key_tenant = authenticator.authenticate(request.headers.get("authorization"))
        except AuthError as refusal:
            raise HTTPError(ErrorCode(refusal.code.value)) from None
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPError(ErrorCode.UNSUPPORTED_MEDIA_TYPE)
        declared = request.headers.get("content-length")
        limit = service.settings.gateway.max_envelope_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(ErrorCode.PAYLOAD_TOO_LARGE)
        raw = await request.body()
        if len(raw) > limit:
            raise HTTPError(ErrorCode.PAYLOAD_TOO_LARGE)
        try:
            body = InferRequest.model_validate(json.loads(raw))
        except ValueError as exc:  # ValidationError is a ValueError; so is bad JSON
            fields = _validation_fields(exc) if isinstance(exc, ValidationError) else None
            raise HTTPError(ErrorCode.INVALID_REQUEST, fields=fields) from None
        try:
            authenticator.authorize(key_tenant, body.tenant_id)
        except AuthError as refusal:
            raise HTTPError(ErrorCode(refusal.code.value)) from None
        want_sse = SSE_MEDIA_TYPE in request.headers.get("accept", "")
        accepted = await service.accept(body, want_plaintext=want_sse)
        headers = {"X-Request-Id": accepted.request_id, "Cache-Control": "no-store"}
        if want_sse:
            stream, media = service.event_stream(accepted), SSE_MEDIA_TYPE
        else:
            stream, media = service.framed_body(accepted), FRAMES_MEDIA_TYPE
        return FinishingStreamingResponse(stream, lambda: service.finish(accepted), media_type=media, headers=headers)

    @app.get("/v1/workers")
    async def workers(request: Request) -> dict[str, Any]:
        """Each region's live workers: id, state, key ids. No secrets."""
        service = _service(request)
        regions: dict[str, list[dict[str, Any]]] = {}
        for region in service.settings.region_names:
            described = await service.backend.key_directory(region)
            regions[region] = [
                {
                    "worker_id": w["worker_id"],
                    "region": w["region"],
                    "state": w.get("state"),
                    "key_ids": [key["key_id"] for key in w["keys"]],
                }
                for w in described
            ]
        return {"regions": regions}

    @app.get("/v1/keys")
    async def keys(request: Request, region: str) -> dict[str, Any]:
        """Public keys a client seals to (unverified here; attestation is the verified path)."""
        service = _service(request)
        if region not in service.settings.region_names:
            raise HTTPError(ErrorCode.UNKNOWN_REGION)
        return {"region": region, "workers": await service.backend.key_directory(region)}

    @app.get("/v1/attestation")
    async def attestation(
        request: Request,
        nonce: Annotated[str, Query(pattern=NONCE_PATTERN, description="verifier's fresh nonce, hex")],
        region: str | None = None,
    ) -> dict[str, Any]:
        """Attestation documents of the live workers (of ``region``, or of every region), each bound to
        ``nonce``. Verify them, then seal only to the keys they attest."""
        service = _service(request)
        if region is not None and region not in service.settings.region_names:
            raise HTTPError(ErrorCode.UNKNOWN_REGION)
        regions = [region] if region is not None else list(service.settings.region_names)
        documents = [w["attestation"] for r in regions for w in await service.backend.attestations(r, nonce)]
        return {"region": region, "nonce": nonce, "documents": documents}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
