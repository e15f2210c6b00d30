"""SDK failures as OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with a status.

Messages are the SDK's content-free ones (codes, reasons, worker ids), never request or answer text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from securechat.client import (
    AttestationFailed,
    ConfigError,
    InvalidCiphertext,
    ReleaseNotLogged,
    ResponseFailed,
    ServiceError,
)

_PASS_THROUGH = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",  # the service found the request invalid: a value the proxy passed on
}
_RETRYABLE = (429, 503)


@dataclass(frozen=True, slots=True)
class ProxyError:
    status: int
    type: str
    code: str
    message: str
    param: str | None = None
    retry_after: float | None = None

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"Retry-After": f"{self.retry_after:g}"} if self.retry_after is not None else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def invalid_request(message: str, param: str | None = None, status: int = 400) -> ProxyError:
    return ProxyError(status, "invalid_request_error", "invalid_request", message, param)


def from_exception(exc: Exception) -> ProxyError:
    """Map an SDK failure; anything else is a programming error and is re-raised by the caller."""
    if isinstance(exc, AttestationFailed):
        return ProxyError(502, "attestation_error", "attestation_failed", str(exc))
    if isinstance(exc, ReleaseNotLogged):
        return ProxyError(502, "attestation_error", "release_not_logged", str(exc))
    if isinstance(exc, InvalidCiphertext):
        message = "the answer failed verification (tampered, reordered or truncated); it was discarded"
        return ProxyError(502, "api_error", "response_verification_failed", message)
    if isinstance(exc, ResponseFailed):
        if exc.code == "invalid_request" and exc.detail:  # the worker named what it cannot honour (sealed to us)
            message = str(exc.detail.get("message") or "invalid request")
            param = exc.detail.get("param")
            return ProxyError(
                400, "invalid_request_error", "invalid_request", message, param if isinstance(param, str) else None
            )
        return ProxyError(502, "api_error", exc.code, f"the service ended the answer with error {exc.code}")
    if isinstance(exc, ServiceError):
        if exc.status in _RETRYABLE:
            kind = "rate_limit_error" if exc.status == 429 else "api_error"
            return ProxyError(exc.status, kind, exc.code, str(exc), retry_after=exc.retry_after)
        if exc.status in _PASS_THROUGH:
            status = 400 if exc.status == 422 else exc.status  # OpenAI clients expect 400 for a bad request
            return ProxyError(status, _PASS_THROUGH[exc.status], exc.code, str(exc))
        return ProxyError(502, "api_error", exc.code, str(exc))
    if isinstance(exc, ConfigError):
        return ProxyError(500, "api_error", "proxy_misconfigured", str(exc))
    raise exc


class ProxyRefusal(Exception):
    """Raised while reading a request the proxy will not forward; carries the answer to give."""

    def __init__(self, error: ProxyError) -> None:
        super().__init__(error.code)
        self.error = error
