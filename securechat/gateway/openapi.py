"""What the gateway's OpenAPI document says each route takes and answers: request bodies (read by hand, after
authentication, so FastAPI cannot see them) and every error status a route can return, each with the one
error body the gateway writes. ``tests/test_openapi_fuzz.py`` holds the document to it with schemathesis."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Final

from pydantic import BaseModel

from securechat.errors import ErrorCode
from securechat.gateway.http_errors import STATUS

# Every route that authenticates: a missing or wrong key, another tenant's key, the tenant database gone.
AUTH: Final = (
    ErrorCode.UNAUTHORIZED,
    ErrorCode.FORBIDDEN,
    ErrorCode.DATABASE_UNAVAILABLE,
    ErrorCode.ISSUER_UNAVAILABLE,
)
# Every route that reads a JSON body, on top of AUTH.
BODY: Final = (*AUTH, ErrorCode.UNSUPPORTED_MEDIA_TYPE, ErrorCode.PAYLOAD_TOO_LARGE, ErrorCode.INVALID_REQUEST)
# A request that goes to a worker (/infer and the sealed collection routes): a worker's error frame can carry
# any code, so any status of the table can come back.
SEALED: Final = tuple(ErrorCode)
# The collection routes the host answers itself, on top of AUTH (and BODY where they take one).
COLLECTION: Final = (
    ErrorCode.MODE_NOT_SUPPORTED,
    ErrorCode.UNKNOWN_COLLECTION,
    ErrorCode.UNKNOWN_DOCUMENT,
    ErrorCode.COLLECTION_EXISTS,
    ErrorCode.STALE_COLLECTION,
    ErrorCode.COLLECTION_TAMPERED,
    ErrorCode.COLLECTION_CHANGED,
)
# Routes that ask the workers (through the orchestrator) what they are.
UPSTREAM: Final = (ErrorCode.UPSTREAM_LOST, ErrorCode.NO_WORKER)
TRANSPARENCY: Final = (
    ErrorCode.INVALID_REQUEST,
    ErrorCode.NO_TRANSPARENCY_LOG,
    ErrorCode.NO_CHECKPOINT,
    ErrorCode.LOG_CORRUPTED,
)


class ValidationField(BaseModel):
    loc: list[str | int]
    type: str | None = None
    msg: str | None = None


class ErrorBody(BaseModel):
    """Every error the gateway answers: a content-free code and a fixed message, never the request's input."""

    error: str
    message: str
    request_id: str | None = None
    fields: list[ValidationField] | None = None  # invalid_request: which fields, never their values
    limit: int | None = None  # payload_too_large: the configured bound
    reason: str | None = None  # a refused token: why (expired, wrong_audience, unknown_key, scope_missing, ...)
    scope: str | None = None  # scope_missing: the scope the route needs


def errors(*groups: Iterable[ErrorCode]) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that can fail with the codes of ``groups``: one entry per status."""
    by_status: defaultdict[int, set[str]] = defaultdict(set)
    for group in groups:
        for code in group:
            by_status[STATUS[code]].add(code.value)
    return {
        status: {"model": ErrorBody, "description": ", ".join(sorted(codes))}
        for status, codes in sorted(by_status.items())
    }


def stream_answer(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a route that streams a worker's answer, in ``media_types``."""
    content = {media: {"schema": {"type": "string", "format": "binary"}} for media in media_types}
    return {
        200: {"description": "the answer as it streams (length-prefixed sealed frames, or events)", "content": content}
    }
