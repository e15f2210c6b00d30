"""How content-free error codes become HTTP answers: status, fixed message, Retry-After."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from securechat.errors import ErrorCode
from securechat.tenants.auth import WWW_AUTHENTICATE, AuthError

STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.REGION_NOT_ALLOWED: 403,
    ErrorCode.MAX_NEW_TOKENS_EXCEEDED: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.TOKEN_LIMITED: 429,
    ErrorCode.TOO_MANY_STREAMS: 429,
    ErrorCode.INVALID_ENVELOPE: 400,
    ErrorCode.UNKNOWN_REGION: 400,
    ErrorCode.NOT_ACCEPTABLE: 406,
    ErrorCode.STALE_KEYS: 409,
    ErrorCode.DUPLICATE_REQUEST: 409,
    ErrorCode.REPLAYED_ENVELOPE: 409,
    ErrorCode.PROMPT_TOO_LONG: 413,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.ENGINE_FAILED: 500,
    ErrorCode.INTERNAL: 500,
    ErrorCode.MODE_NOT_SUPPORTED: 501,
    ErrorCode.WORKER_LOST: 502,
    ErrorCode.NO_WORKER: 503,
    ErrorCode.UPSTREAM_LOST: 503,
    ErrorCode.OVERLOADED: 503,
    ErrorCode.DATABASE_UNAVAILABLE: 503,
    ErrorCode.ISSUER_UNAVAILABLE: 503,
    ErrorCode.CANCELLED: 499,
    ErrorCode.UNKNOWN_COLLECTION: 404,
    ErrorCode.UNKNOWN_DOCUMENT: 404,
    ErrorCode.COLLECTION_EXISTS: 409,
    ErrorCode.TOO_MANY_DOCUMENTS: 413,
    ErrorCode.TOO_MANY_CHUNKS: 413,
    ErrorCode.DOCUMENT_EMPTY: 413,
    ErrorCode.DOCUMENT_TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_DOCUMENT_TYPE: 415,
    ErrorCode.DOCUMENT_TYPE_MISMATCH: 415,
    ErrorCode.DOCUMENT_MALFORMED: 422,
    ErrorCode.DOCUMENT_ENCRYPTED: 422,
    ErrorCode.NO_TEXT_LAYER: 422,
    ErrorCode.DOCUMENT_TOO_COMPLEX: 413,
    ErrorCode.STALE_COLLECTION: 409,
    ErrorCode.COLLECTION_TAMPERED: 409,
    ErrorCode.COLLECTION_CHANGED: 409,
    ErrorCode.NO_TRANSPARENCY_LOG: 404,
    ErrorCode.NO_CHECKPOINT: 503,
    ErrorCode.LOG_CORRUPTED: 500,
}

MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_REQUEST: "The request body is not valid.",
    ErrorCode.UNAUTHORIZED: "Send a valid API key: Authorization: Bearer <key>.",
    ErrorCode.FORBIDDEN: "This API key belongs to another tenant.",
    ErrorCode.REGION_NOT_ALLOWED: "This tenant may not use this region.",
    ErrorCode.MAX_NEW_TOKENS_EXCEEDED: "max_new_tokens is over this tenant's limit.",
    ErrorCode.RATE_LIMITED: "Too many requests for this tenant; retry later.",
    ErrorCode.TOKEN_LIMITED: "Too many tokens for this tenant; retry later.",
    ErrorCode.TOO_MANY_STREAMS: "Too many concurrent streams for this tenant; retry later.",
    ErrorCode.INVALID_ENVELOPE: "The envelope is malformed or cannot be opened.",
    ErrorCode.UNKNOWN_REGION: "The region is not served here.",
    ErrorCode.NOT_ACCEPTABLE: "Decrypted streams are only offered for prompts sealed at the gateway.",
    ErrorCode.STALE_KEYS: "The envelope is not sealed for any live worker: refetch the key set and reseal.",
    ErrorCode.DUPLICATE_REQUEST: "This request id was already used.",
    ErrorCode.REPLAYED_ENVELOPE: "The worker ran this envelope already, or it expired: seal a new one.",
    ErrorCode.PROMPT_TOO_LONG: "The prompt is over the configured limit.",
    ErrorCode.PAYLOAD_TOO_LARGE: "The request body is over the configured limit.",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "Send Content-Type: application/json.",
    ErrorCode.ENGINE_FAILED: "The worker failed while generating.",
    ErrorCode.INTERNAL: "Internal error.",
    ErrorCode.MODE_NOT_SUPPORTED: "This mode is not available yet; use mode 'plain'.",
    ErrorCode.WORKER_LOST: "The worker was lost.",
    ErrorCode.NO_WORKER: "No live worker in this region; retry later.",
    ErrorCode.UPSTREAM_LOST: "The orchestrator is unavailable; retry later.",
    ErrorCode.OVERLOADED: "The service is at capacity; retry later.",
    ErrorCode.DATABASE_UNAVAILABLE: "The service's database is unavailable; retry later.",
    ErrorCode.ISSUER_UNAVAILABLE: "The token's identity provider cannot be reached for its keys; retry later.",
    ErrorCode.CANCELLED: "The request was cancelled.",
    ErrorCode.UNKNOWN_COLLECTION: "No such collection.",
    ErrorCode.UNKNOWN_DOCUMENT: "No such document in this collection.",
    ErrorCode.COLLECTION_EXISTS: "A collection with this id exists.",
    ErrorCode.TOO_MANY_DOCUMENTS: "This would put the tenant over its document limit.",
    ErrorCode.TOO_MANY_CHUNKS: "This would put the tenant over its chunk limit.",
    ErrorCode.DOCUMENT_EMPTY: "A document has no text to index.",
    ErrorCode.DOCUMENT_TOO_LARGE: "A document is over the size limit.",
    ErrorCode.UNSUPPORTED_DOCUMENT_TYPE: "Documents must be PDF, Word (.docx), HTML, markdown or text (UTF-8).",
    ErrorCode.DOCUMENT_TYPE_MISMATCH: "A document's content is not of the type its name or media type declares.",
    ErrorCode.DOCUMENT_MALFORMED: "A document does not parse (malformed or truncated).",
    ErrorCode.DOCUMENT_ENCRYPTED: "A document is password-protected; upload it without the password.",
    ErrorCode.NO_TEXT_LAYER: "A PDF holds no text (scanned pages); run OCR on it first.",
    ErrorCode.DOCUMENT_TOO_COMPLEX: "A document is over the worker's time or memory budget for one document.",
    ErrorCode.STALE_COLLECTION: "The store holds an older state of this collection than the client has seen.",
    ErrorCode.COLLECTION_TAMPERED: "The collection's stored state does not match what its key vouches for.",
    ErrorCode.COLLECTION_CHANGED: "The collection changed meanwhile: read its state again and retry.",
    ErrorCode.NO_TRANSPARENCY_LOG: "This service publishes no release log (transparency.log_db is not set).",
    ErrorCode.NO_CHECKPOINT: "The release log has no signed checkpoint yet.",
    ErrorCode.LOG_CORRUPTED: "The release log's stored leaves no longer match its signed checkpoints.",
}

RETRYABLE = frozenset(
    {
        ErrorCode.NO_WORKER,
        ErrorCode.OVERLOADED,
        ErrorCode.WORKER_LOST,
        ErrorCode.UPSTREAM_LOST,
        ErrorCode.DATABASE_UNAVAILABLE,
        ErrorCode.ISSUER_UNAVAILABLE,
    }
)


class HTTPError(Exception):
    """Raised inside handlers; turned into the JSON error body by the app's exception handler."""

    def __init__(
        self,
        code: ErrorCode,
        request_id: str | None = None,
        fields: list[dict[str, Any]] | None = None,
        retry_after: str | None = None,
        limit: int | None = None,
        auth: AuthError | None = None,
    ) -> None:
        super().__init__(code.value)
        self.code = code
        self.request_id = request_id
        self.fields = fields
        self.retry_after = retry_after  # overrides the configured Retry-After (per-tenant limits know better)
        self.limit = limit  # the configured bound the request went over (a number, never input)
        self.auth = auth  # a refused credential: its reason and the scope it lacks, for the body and header

    @classmethod
    def refused(cls, refusal: AuthError) -> HTTPError:
        return cls(ErrorCode(refusal.code.value), auth=refusal)


def error_response(error: HTTPError, retry_after_s: int) -> JSONResponse:
    body: dict[str, Any] = {"error": error.code.value, "message": MESSAGES[error.code]}
    if error.request_id:
        body["request_id"] = error.request_id
    if error.fields is not None:
        body["fields"] = error.fields
    if error.limit is not None:
        body["limit"] = error.limit
    if error.auth is not None and error.auth.reason is not None:
        body["reason"] = error.auth.reason  # a token's refusal, by name (never the token or a claim)
        if error.auth.scope is not None:
            body["scope"] = error.auth.scope
    headers: dict[str, str] = {}
    if error.retry_after is not None:
        headers["Retry-After"] = error.retry_after
    elif error.code in RETRYABLE:
        headers["Retry-After"] = str(retry_after_s)
    challenge = error.auth.www_authenticate if error.auth is not None else None
    if challenge is not None:
        headers["WWW-Authenticate"] = challenge
    elif error.code is ErrorCode.UNAUTHORIZED:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return JSONResponse(body, status_code=STATUS[error.code], headers=headers)
