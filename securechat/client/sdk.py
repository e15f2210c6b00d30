"""``SecureChatClient``: verify the region's workers, seal to the verified keys only, decrypt the answer.

Per request: take the cached verified keys (or attest afresh with a new nonce), seal the body for every one of
them under a new request id, POST the envelope, and read the frames as they arrive. A 409 ``stale_keys`` means
the key set changed (a worker was replaced): attest again, reseal under a new request id, and retry once.
Nothing is ever sealed to a key that did not pass attestation, and nothing is sent when none did.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Unpack

import httpx

from securechat.attestation import AttestationVerifier, VerificationReport, new_nonce
from securechat.client.config import ClientConfig
from securechat.client.errors import ServiceError
from securechat.client.messages import Prompt, Sampling, build_body
from securechat.client.stream import CompletionStream
from securechat.client.trust import VerifiedKeys, load_verifier, read_documents
from securechat.envelope import SealedRequest, seal_request
from securechat.errors import ErrorCode
from securechat.logs import get_logger, log_event
from securechat.response import Completion

logger = get_logger("client")

FRAMES_MEDIA_TYPE = "application/octet-stream"


class SecureChatClient:
    """Thread-safe; one instance per service and tenant. ``http`` may be shared (and is then not closed)."""

    def __init__(
        self,
        config: ClientConfig,
        http: httpx.Client | None = None,
        *,
        verifier: AttestationVerifier | None = None,
    ) -> None:
        self.config = config
        self._verifier = verifier or load_verifier(config)  # fails fast on a missing or broken trust file
        self._http = http or httpx.Client(timeout=config.timeout_s)
        self._owns_http = http is None
        self._lock = threading.Lock()
        self._keys: VerifiedKeys | None = None

    # -- attestation ---------------------------------------------------------------------------------------
    def attest(self) -> VerificationReport:
        """Fetch the region's documents for a fresh nonce and verify each one; cache the verified keys.

        Raises AttestationFailed (with every refusal's reason) when no worker offers a verified key.
        """
        started = time.perf_counter()
        nonce = new_nonce()
        response = self._request("GET", "/v1/attestation", params={"region": self.config.region, "nonce": nonce})
        try:
            documents = read_documents(response.json(), self.config.region, nonce)
        except ValueError:
            raise ServiceError(response.status_code, "invalid_attestation_answer") from None
        report = self._verifier.verify_all(documents, nonce)
        config = self.config
        keys = VerifiedKeys.from_report(report, config.region, config.suite, ttl_s=config.key_cache_ttl_s)
        with self._lock:
            self._keys = keys
        log_event(
            logger,
            "client_attested",
            region=self.config.region,
            num_keys=len(keys.keys),
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return report

    def _verified_keys(self, *, refresh: bool) -> VerifiedKeys:
        with self._lock:
            cached = self._keys
        if refresh or cached is None or not cached.is_fresh():
            self.attest()
            with self._lock:
                assert self._keys is not None
                cached = self._keys
        return cached

    # -- requests --------------------------------------------------------------------------------------------
    def open_stream(self, prompt: Prompt, **sampling: Unpack[Sampling]) -> CompletionStream:
        """Send the request now; return the answer's stream once the service accepted it (HTTP 200).

        Raises AttestationFailed, ServiceError (status, code, retry_after) or ConfigError before any text.
        """
        body = build_body(prompt, **sampling)
        for attempt in (1, 2):
            keys = self._verified_keys(refresh=attempt > 1)
            sealed = self._seal(body, keys)
            response = self._send_infer(sealed, attempt)
            if response.status_code == 200 and _media_type(response) == FRAMES_MEDIA_TYPE:
                return CompletionStream(response, sealed)
            error = _service_error(response)
            if error.code == ErrorCode.STALE_KEYS and attempt == 1:
                log_event(logger, "client_stale_keys", request_id=sealed.request_id, region=self.config.region)
                continue
            raise error
        raise AssertionError("unreachable")

    def stream(self, prompt: Prompt, **sampling: Unpack[Sampling]) -> Iterator[str]:
        """Yield the answer's text pieces as they arrive, each authenticated before it is yielded."""
        with self.open_stream(prompt, **sampling) as opened:
            yield from opened

    def complete(self, prompt: Prompt, **sampling: Unpack[Sampling]) -> Completion:
        """The whole answer: text, request id and the worker's content-free metrics."""
        with self.open_stream(prompt, **sampling) as opened:
            return opened.read()

    def chat(self, prompt: Prompt, **sampling: Unpack[Sampling]) -> str:
        return self.complete(prompt, **sampling).text

    def _seal(self, body: bytes, keys: VerifiedKeys) -> SealedRequest:
        return seal_request(
            body,
            request_id=uuid.uuid4().hex,  # new for every attempt: the service refuses a replayed id
            tenant_id=self.config.tenant_id,
            mode="plain",
            region=self.config.region,
            recipients=keys.keys,
            suite=self.config.suite,
        )

    def _send_infer(self, sealed: SealedRequest, attempt: int) -> httpx.Response:
        payload = {
            "tenant_id": self.config.tenant_id,
            "mode": "plain",
            "region": self.config.region,
            "envelope": sealed.envelope.to_dict(),
        }
        log_event(
            logger,
            "client_request_sent",
            request_id=sealed.request_id,
            region=self.config.region,
            attempt=attempt,
            num_keys=len(sealed.envelope.header.key_ids),
        )
        return self._request("POST", "/infer", json=payload, stream=True)

    # -- HTTP --------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": FRAMES_MEDIA_TYPE if path == "/infer" else "application/json"}
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = self._http.build_request(method, self.config.base_url + path, headers=headers, **kwargs)
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            log_event(logger, "client_connect_failed", level=logging.WARNING, reason=type(exc).__name__)
            raise ServiceError(None, "connection_failed") from None
        if not stream and response.status_code != 200:
            raise _service_error(response)
        return response

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> SecureChatClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";")[0].strip().lower()


def _service_error(response: httpx.Response) -> ServiceError:
    """A ServiceError from an error answer (reads and closes it). The body's message is not kept: only codes."""
    try:
        response.read()
        body = response.json()
    except (ValueError, httpx.HTTPError):
        body = None
    finally:
        response.close()
    code, request_id = "unexpected_answer", None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"][:64]
        request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
    elif response.status_code == 200:
        code = "invalid_response"
    return ServiceError(response.status_code, code, _retry_after(response), request_id)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
