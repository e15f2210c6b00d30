"""``SecureChatClient``: verify the region's workers, seal to the verified keys only, decrypt the answer.

Per request: take the cached verified keys (or attest afresh with a new nonce), seal the body for every one of
them under a new request id, POST the envelope, and read the frames as they arrive. A 409 ``stale_keys`` means
the key set changed (a worker was replaced): attest again, reseal under a new request id, and retry once.
Nothing is ever sealed to a key that did not pass attestation, and nothing is sent when none did. With a
pinned release log, every attestation first checks that the pinned manifest is in the log (inclusion, log
signature, witness cosignatures, consistency with the checkpoint this client saw before); a refusal raises
``ReleaseNotLogged`` and nothing is sealed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Unpack

import httpx

from securechat.attestation import AttestationVerifier, SignedManifest, VerificationReport, new_nonce
from securechat.client.collections import CollectionsClient
from securechat.client.config import ClientConfig
from securechat.client.credentials import Credentials
from securechat.client.errors import ReleaseNotLogged, ServiceError
from securechat.client.keyring import Keyring
from securechat.client.messages import Prompt, Sampling, build_request
from securechat.client.stream import CompletionStream
from securechat.client.trust import VerifiedKeys, load_release_verifier, load_verifier, read_documents
from securechat.envelope import SealedRequest, seal_request
from securechat.errors import ErrorCode
from securechat.logs import get_logger, log_event
from securechat.rag.bodies import DEFAULT_TOP_K, EmbedBody, RagBody
from securechat.response import Completion
from securechat.stream import FinalEvent
from securechat.transparency import ReleaseEvidence, TransparencyError, TransparencyFailure, VerifiedRelease
from securechat.transparency.leaf import manifest_leaf_hash

logger = get_logger("client")

FRAMES_MEDIA_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]] = field(repr=False)
    input_tokens: int  # the embedder's tokens, as the worker counted them


class SecureChatClient:
    """Thread-safe; one instance per service and tenant. ``http`` may be shared (and is then not closed)."""

    def __init__(
        self,
        config: ClientConfig,
        http: httpx.Client | None = None,
        *,
        verifier: AttestationVerifier | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.config = config
        self._verifier = verifier or load_verifier(config)  # fails fast on a missing or broken trust file
        self._releases = load_release_verifier(config)
        self.release: VerifiedRelease | None = None  # the log entry of the pinned manifest, last checked
        self._http = http or httpx.Client(timeout=config.timeout_s)
        self._owns_http = http is None
        self._lock = threading.Lock()
        self._keys: VerifiedKeys | None = None
        self.keyring = keyring or Keyring()
        self._credentials = Credentials(config.api_key, config.token, config.token_command)
        self.collections = CollectionsClient(self)

    # -- attestation ---------------------------------------------------------------------------------------
    def attest(self) -> VerificationReport:
        """Fetch the region's documents for a fresh nonce and verify each one; cache the verified keys.

        Raises AttestationFailed (with every refusal's reason) when no worker offers a verified key, and
        ReleaseNotLogged (before any document is fetched) when a pinned release log does not vouch for the
        pinned manifest.
        """
        started = time.perf_counter()
        if self._releases is not None:
            self.release = self._check_release()
        nonce = new_nonce()
        response = self._request("GET", "/v1/attestation", params={"region": self.config.region, "nonce": nonce})
        try:
            documents = read_documents(response.json(), self.config.region, nonce)
        except ValueError:
            raise ServiceError(response.status_code, "invalid_attestation_answer") from None
        report = self._verifier.verify_all(documents, nonce)
        config = self.config
        keys = VerifiedKeys.from_report(report, config.region, config.suites, ttl_s=config.key_cache_ttl_s)
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

    @property
    def manifest(self) -> SignedManifest:
        """The pinned release manifest workers are verified against (read and checked once, at construction)."""
        return self._verifier.manifest

    def _check_release(self) -> VerifiedRelease:
        assert self._releases is not None
        manifest = self._verifier.manifest
        params = {"leaf_hash": manifest_leaf_hash(manifest).hex()}
        for attempt in range(2):
            params["old_size"] = str(self._releases.last_seen_size())
            try:
                response = self._request("GET", "/v1/transparency/evidence", params=params)
            except ServiceError as error:
                if error.status is None:  # unreachable: the same failure as any other call
                    raise
                raise ReleaseNotLogged("log_unavailable", status=error.status, code=error.code) from None
            try:
                evidence = ReleaseEvidence.from_dict(response.json())
            except ValueError:
                raise ReleaseNotLogged(TransparencyFailure.MALFORMED.value) from None
            try:
                return self._releases.verify(manifest, evidence)
            except TransparencyError as refused:
                # Another process of this user may have moved the last-seen checkpoint between the two steps.
                if refused.reason is TransparencyFailure.CONSISTENCY_PROOF_MISSING and attempt == 0:
                    continue
                raise ReleaseNotLogged(refused.reason.value) from None
        raise AssertionError("unreachable")

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
    def open_stream(
        self, prompt: Prompt, *, collection: str | None = None, top_k: int | None = None, **sampling: Unpack[Sampling]
    ) -> CompletionStream:
        """Send the request now; return the answer's stream once the service accepted it (HTTP 200).

        With ``collection`` (an id in the keyring) the worker answers from the collection's ``top_k`` nearest
        excerpts and the final frame carries the citations; the collection key travels sealed, like the prompt.
        Raises AttestationFailed, ServiceError (status, code, retry_after) or ConfigError before any text.
        """
        request = build_request(prompt, **sampling)
        if collection is None:
            return self.open_sealed("plain", request.to_bytes(), "/infer")
        body = RagBody(request, self.collections.ref(collection), top_k or DEFAULT_TOP_K).to_bytes()

        def keep_state(final: FinalEvent) -> None:
            state = final.extra.get("collection")
            self.collections.saw_state(collection, state.get("counter") if isinstance(state, dict) else None)

        return self.open_sealed("rag", body, "/infer", {"collection_id": collection}, on_final=keep_state)

    def open_sealed(
        self,
        mode: str,
        body: bytes,
        path: str,
        fields: dict[str, Any] | None = None,
        on_final: Callable[[FinalEvent], None] | None = None,
    ) -> CompletionStream:
        """Seal ``body`` in ``mode`` for the verified keys and POST it to ``path``; the answer's frame stream
        (``on_final`` runs with its authenticated final frame).

        A 409 ``stale_keys`` (a worker was replaced) re-attests and reseals under a new request id, once.
        """
        for attempt in (1, 2):
            keys = self._verified_keys(refresh=attempt > 1)
            sealed = self._seal(body, keys, mode)
            response = self._send_sealed(path, sealed, mode, fields or {}, attempt)
            if response.status_code == 200 and _media_type(response) == FRAMES_MEDIA_TYPE:
                return CompletionStream(response, sealed, on_final)
            error = _service_error(response)
            if error.code == ErrorCode.STALE_KEYS and attempt == 1:
                log_event(logger, "client_stale_keys", request_id=sealed.request_id, region=self.config.region)
                continue
            raise error
        raise AssertionError("unreachable")

    def stream(
        self, prompt: Prompt, *, collection: str | None = None, top_k: int | None = None, **sampling: Unpack[Sampling]
    ) -> Iterator[str]:
        """Yield the answer's text pieces as they arrive, each authenticated before it is yielded."""
        with self.open_stream(prompt, collection=collection, top_k=top_k, **sampling) as opened:
            yield from opened

    def complete(
        self, prompt: Prompt, *, collection: str | None = None, top_k: int | None = None, **sampling: Unpack[Sampling]
    ) -> Completion:
        """The whole answer: text, request id, the worker's content-free metrics, and citations (with
        ``collection``)."""
        with self.open_stream(prompt, collection=collection, top_k=top_k, **sampling) as opened:
            return opened.read()

    def chat(
        self, prompt: Prompt, *, collection: str | None = None, top_k: int | None = None, **sampling: Unpack[Sampling]
    ) -> str:
        return self.complete(prompt, collection=collection, top_k=top_k, **sampling).text

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Sentence embeddings (all-MiniLM-L6-v2, 384 dimensions, unit length), computed in a worker."""
        with self.open_sealed("embed", EmbedBody(tuple(texts)).to_bytes(), "/v1/embeddings") as opened:
            vectors = opened.result().get("embeddings")
            input_tokens = opened.final.usage.input_tokens if opened.final is not None else 0
        if not isinstance(vectors, list):
            raise ServiceError(200, "invalid_response")
        return Embeddings([[float(x) for x in row] for row in vectors], input_tokens)

    def _seal(self, body: bytes, keys: VerifiedKeys, mode: str) -> SealedRequest:
        return seal_request(
            body,
            request_id=uuid.uuid4().hex,  # new for every attempt: the service refuses a replayed id
            tenant_id=self.config.tenant_id,
            mode=mode,
            region=self.config.region,
            recipients=keys.keys,
        )

    def _send_sealed(
        self, path: str, sealed: SealedRequest, mode: str, fields: dict[str, Any], attempt: int
    ) -> httpx.Response:
        payload: dict[str, Any] = {
            "tenant_id": self.config.tenant_id,
            "region": self.config.region,
            "envelope": sealed.envelope.to_dict(),
            **fields,
        }
        if path == "/infer":
            payload["mode"] = mode
        log_event(
            logger,
            "client_request_sent",
            request_id=sealed.request_id,
            region=self.config.region,
            attempt=attempt,
            num_keys=len(sealed.envelope.header.key_ids),
        )
        return self._request("POST", path, json=payload, stream=True)

    # -- HTTP --------------------------------------------------------------------------------------------------
    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """A plain JSON call (the collection routes that need no worker); errors raise ServiceError."""
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ServiceError(response.status_code, "invalid_response") from None

    def _request(self, method: str, path: str, *, stream: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": FRAMES_MEDIA_TYPE if stream else "application/json"}
        authorization = self._credentials.authorization()
        if authorization is not None:
            headers["Authorization"] = authorization
        request = self._http.build_request(method, self.config.base_url + path, headers=headers, **kwargs)
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            log_event(logger, "client_connect_failed", level=logging.WARNING, reason=type(exc).__name__)
            raise ServiceError(None, "connection_failed") from None
        if not stream and not 200 <= response.status_code < 300:
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
