"""The gateway's request handling, independent of FastAPI routing and of Ray.

A plain prompt is sealed here, before anything reaches the orchestrator, for every live worker key of its
region; a client-sealed envelope passes through untouched after its header is checked against the request.
The first wire frame decides the HTTP status: an error frame before any data becomes a JSON error; after that
frames stream through as they are (a later failure reaches the client as a typed error frame). The gateway
reads only what every frame shows the host: its size, and the token counts in the clear in the final frame,
which it charges to the tenant.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

from securechat.config import AppSettings
from securechat.dispatcher import new_request_id
from securechat.engine.base import SamplingParams
from securechat.envelope import Envelope, SealedRequest, seal_request
from securechat.errors import ErrorCode, InvalidCiphertext, InvalidFrame
from securechat.framing import LENGTH_PREFIX, FrameDecoder, encode_frame
from securechat.gateway.attestation_gate import AttestationGate, AttestationRateLimited
from securechat.gateway.backend import OrchestratorBackend
from securechat.gateway.collections import CollectionAdmin
from securechat.gateway.http_errors import HTTPError
from securechat.gateway.key_directory import KeyDirectory, is_serving
from securechat.gateway.schemas import InferRequest
from securechat.gateway.tenant_calls import TenantCalls
from securechat.host_limits import HostLimits
from securechat.logs import get_logger, log_event
from securechat.rag.bodies import DEFAULT_TOP_K, CollectionRef, RagBody
from securechat.rag.keys import CollectionKey, InvalidCollectionKey
from securechat.rag.store_client import AsyncDocumentStore
from securechat.request_body import RequestBody
from securechat.stream import (
    ERROR_FRAME,
    ErrorEvent,
    FinalEvent,
    ResponseOpener,
    TextEvent,
    make_error_frame,
    read_usage,
)
from securechat.tenants.limits import StreamLease, estimate_tokens
from securechat.tenants.policy import TenantPolicy
from securechat.tenants.tenancy import Tenancy

logger = get_logger("gateway")

_GENERATING_MODES = frozenset({"plain", "rag"})  # the modes whose body is a prompt for the model


class GatewayObserver(Protocol):
    def request_finished(self, status_code: int, e2e_ms: float, frames: int, num_bytes: int) -> None: ...


class NullGatewayObserver:
    def request_finished(self, status_code: int, e2e_ms: float, frames: int, num_bytes: int) -> None:
        pass


@dataclass(slots=True)
class AcceptedStream:
    """A request that passed admission: its first frame, the rest of the stream and its tenant's lease."""

    request_id: str
    first_frame: bytes
    rest: AsyncIterator[bytes]
    opener: ResponseOpener | None  # set when the gateway sealed the request and can decrypt (SSE)
    started: float
    lease: StreamLease
    frames: int = 0
    num_bytes: int = 0
    output_tokens: int | None = None  # from the final frame's clear token counts, once it has passed
    closed: bool = False
    lease_renewed: float = 0.0  # time.monotonic() of admission or the lease's last renewal

    def count(self, frames: list[bytes], num_bytes: int) -> None:
        """Tally frames as they pass; the final frame's clear header says how many tokens the answer had."""
        self.frames += len(frames)
        self.num_bytes += num_bytes
        for frame in frames:
            usage = read_usage(frame)
            if usage is not None:
                self.output_tokens = usage.output_tokens


class GatewayService:
    def __init__(
        self,
        settings: AppSettings,
        backend: OrchestratorBackend,
        tenancy: Tenancy,
        observer: GatewayObserver | None = None,
        documents: AsyncDocumentStore | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.tenancy = tenancy
        self.observer: GatewayObserver = observer or NullGatewayObserver()
        self.tenant_calls = TenantCalls(tenancy)
        self.keys = KeyDirectory(backend, settings.gateway.key_directory_ttl_s)
        self.attestation_gate = AttestationGate(settings.gateway.attestations_per_minute)
        self.collections = CollectionAdmin(documents) if documents is not None else None

    async def readiness(self) -> list[str]:
        """The regions without a serving (READY, or busy past READY) worker: empty when requests can be taken.
        Served from the worker directory's cache, so a load balancer's polling costs no broadcast per call."""
        regions = self.settings.region_names
        described = await asyncio.gather(*(self.keys.workers(region) for region in regions), return_exceptions=True)
        return [
            region
            for region, workers in zip(regions, described, strict=True)
            if isinstance(workers, BaseException) or not any(is_serving(worker) for worker in workers)
        ]

    async def attestations(self, regions: list[str], nonce: str) -> list[dict[str, Any]]:
        """Every live worker's document for ``nonce``, within the endpoint's rate (429 beyond it)."""

        async def fetch() -> list[dict[str, Any]]:
            return [w["attestation"] for r in regions for w in await self.backend.attestations(r, nonce)]

        try:
            return await self.attestation_gate.documents((nonce, *regions), fetch)
        except AttestationRateLimited as refused:
            retry_after = str(max(1, math.ceil(refused.retry_after_s)))
            raise HTTPError(ErrorCode.RATE_LIMITED, retry_after=retry_after) from None

    async def accept(self, request: InferRequest, want_plaintext: bool) -> AcceptedStream:
        """Admit, seal or pass through, dispatch, and wait for the first frame. Raises HTTPError.

        The caller has authenticated the request's tenant (``request.tenant_id``).
        """
        started = time.perf_counter()
        if request.region not in self.settings.region_names:
            raise HTTPError(ErrorCode.UNKNOWN_REGION)
        if request.mode not in self.settings.modes_for(request.region):
            raise HTTPError(ErrorCode.MODE_NOT_SUPPORTED)
        policy = await self.tenant_calls.policy(request.tenant_id)
        if request.collection_id is not None:
            await self._require_collections().check(request.tenant_id, request.collection_id)
        if request.envelope is not None:
            if want_plaintext:
                raise HTTPError(ErrorCode.NOT_ACCEPTABLE)
            envelope = self._client_envelope(request)
            envelope_bytes = envelope.to_bytes()
            lease = await self._admit(request, policy, len(envelope.ciphertext))
            try:
                first, rest = await self._dispatch(envelope_bytes, policy)
            except BaseException:
                await self.tenant_calls.settle(lease)
                raise
            request_id = envelope.header.request_id
            return AcceptedStream(request_id, first, rest, None, started, lease, lease_renewed=time.monotonic())
        assert request.prompt is not None
        if len(request.prompt) > self.settings.gateway.max_prompt_chars:
            raise HTTPError(ErrorCode.PROMPT_TOO_LONG)
        lease = await self._admit(request, policy, len(request.prompt.encode()))
        try:
            engine_limit = self.settings.engine_for(request.region).max_new_tokens
            max_new_tokens = request.max_new_tokens or min(engine_limit, policy.max_new_tokens)
            for refresh in (False, True):
                sealed = await self._seal_prompt(request, max_new_tokens, refresh)
                try:
                    first, rest = await self._dispatch(sealed.envelope.to_bytes(), policy)
                except HTTPError as error:
                    if error.code is ErrorCode.STALE_KEYS and not refresh:
                        continue  # a worker was replaced since the directory was cached: refetch and reseal once
                    raise
                opener = ResponseOpener.for_request(sealed.dek, sealed.request_id)
                renewed = time.monotonic()
                return AcceptedStream(sealed.request_id, first, rest, opener, started, lease, lease_renewed=renewed)
            raise HTTPError(ErrorCode.STALE_KEYS)
        except BaseException:
            await self.tenant_calls.settle(lease)
            raise

    async def _admit(self, request: InferRequest, policy: TenantPolicy, num_bytes: int) -> StreamLease:
        """The tenant's limits; the prompt size is estimated from bytes (a client envelope's from its ciphertext).

        Only a generating mode's body is a prompt. An ingest, search or embed body is documents or queries whose
        size the worker's own limits bound (a base64 PDF is no measure of tokens): its estimate is capped at the
        prompt limit so that limit does not refuse it, and the worker's count in the final frame corrects it.
        """
        est_tokens = estimate_tokens(num_bytes)
        if request.mode not in _GENERATING_MODES:
            est_tokens = min(est_tokens, policy.max_prompt_tokens)
        return await self.tenant_calls.admit(
            request.tenant_id, policy, est_tokens, request.region, request.max_new_tokens
        )

    def _client_envelope(self, request: InferRequest) -> Envelope:
        assert request.envelope is not None
        try:
            envelope = Envelope.from_dict(request.envelope)
        except ValueError:
            raise HTTPError(ErrorCode.INVALID_ENVELOPE) from None
        header = envelope.header
        if (header.tenant_id, header.region, header.mode) != (
            request.tenant_id,
            request.region,
            request.mode,
        ):
            raise HTTPError(ErrorCode.INVALID_ENVELOPE, header.request_id)
        return envelope

    async def _seal_prompt(self, request: InferRequest, max_new_tokens: int, refresh: bool) -> SealedRequest:
        recipients = await self.keys.recipients(request.region, self.settings.sealing.suites, refresh=refresh)
        if not recipients:
            raise HTTPError(ErrorCode.NO_WORKER)
        assert request.prompt is not None
        sampling = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=tuple(request.stop or ()),
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
        )
        plain = RequestBody.from_prompt(request.prompt, sampling)
        body = plain.to_bytes() if request.mode == "plain" else self._rag_body(request, plain)
        return seal_request(
            body,
            request_id=new_request_id(),
            tenant_id=request.tenant_id,
            mode=request.mode,
            region=request.region,
            recipients=recipients,
        )

    @staticmethod
    def _rag_body(request: InferRequest, plain: RequestBody) -> bytes:
        assert request.collection_id is not None and request.collection_key is not None
        try:
            collection = CollectionRef(request.collection_id, CollectionKey.from_b64(request.collection_key))
        except InvalidCollectionKey:
            raise HTTPError(ErrorCode.INVALID_REQUEST, fields=[{"loc": ["body", "collection_key"]}]) from None
        return RagBody(plain, collection, request.top_k or DEFAULT_TOP_K).to_bytes()

    def _require_collections(self) -> CollectionAdmin:
        if self.collections is None:
            raise HTTPError(ErrorCode.MODE_NOT_SUPPORTED)
        return self.collections

    async def _dispatch(self, envelope: bytes, policy: TenantPolicy) -> tuple[bytes, AsyncIterator[bytes]]:
        limits = HostLimits(policy.max_new_tokens, policy.max_documents, policy.max_chunks)
        stream = self.backend.infer(envelope, limits)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise HTTPError(ErrorCode.INTERNAL) from None
        except Exception as exc:  # the orchestrator died or is restarting: nothing was streamed, retry later
            log_event(logger, "upstream_failed", level=logging.WARNING, reason=type(exc).__name__)
            await _close(stream)
            raise HTTPError(ErrorCode.UPSTREAM_LOST) from None
        except BaseException:  # cancelled (the client left): close the upstream now, not at garbage collection
            await _close(stream)
            raise
        (length,) = LENGTH_PREFIX.unpack_from(first)
        payload = first[LENGTH_PREFIX.size : LENGTH_PREFIX.size + length]
        if payload[:1] == bytes([ERROR_FRAME]):
            await _close(stream)
            body = json.loads(payload[1:])
            code = ErrorCode(body["code"]) if body.get("code") in ErrorCode._value2member_map_ else ErrorCode.INTERNAL
            limit = {
                ErrorCode.DOCUMENT_TOO_LARGE: self.settings.rag.max_document_bytes,
                ErrorCode.TOO_MANY_DOCUMENTS: policy.max_documents,
                ErrorCode.TOO_MANY_CHUNKS: policy.max_chunks,
            }.get(code)
            raise HTTPError(code, body.get("request_id"), limit=limit)
        return first, stream

    async def framed_body(self, accepted: AcceptedStream) -> AsyncIterator[bytes]:
        """The octet-stream body: wire frames exactly as the worker sealed them."""
        decoder = FrameDecoder()
        try:
            async with aclosing(_prepend(accepted.first_frame, accepted.rest, accepted.request_id)) as chunks:
                async for chunk in chunks:
                    accepted.count(decoder.feed(chunk), len(chunk))
                    yield chunk
                    self._keep_lease(accepted)
        finally:
            await self.finish(accepted)

    async def event_stream(self, accepted: AcceptedStream) -> AsyncIterator[bytes]:
        """Server-sent events with decrypted text: only for prompts the gateway sealed (trusts the TLS edge)."""
        opener = accepted.opener
        assert opener is not None
        decoder = FrameDecoder()
        try:
            async with aclosing(_prepend(accepted.first_frame, accepted.rest, accepted.request_id)) as chunks:
                async for chunk in chunks:
                    self._keep_lease(accepted)
                    frames = decoder.feed(chunk)
                    accepted.count(frames, len(chunk))
                    for frame in frames:
                        event = opener.open(frame)
                        if isinstance(event, TextEvent) and event.text:
                            yield _sse("token", {"text": event.text})
                        elif isinstance(event, FinalEvent):
                            name = "error" if event.error else "done"
                            yield _sse(name, {**event.extra, "error": event.error, "metrics": event.metrics})
                        elif isinstance(event, ErrorEvent):
                            yield _sse("error", {"error": event.code})
            decoder.close()
            opener.finish()
        except (InvalidCiphertext, InvalidFrame):  # never a silent end: the client is told the stream failed
            if not opener.finished:
                log_event(logger, "stream_unverifiable", level=logging.WARNING, request_id=accepted.request_id)
                yield _sse("error", {"error": ErrorCode.WORKER_LOST.value})
        finally:
            await self.finish(accepted)

    def _keep_lease(self, accepted: AcceptedStream) -> None:
        """Renew a long stream's shared lease (cheap check per chunk, a database call every ttl / 3)."""
        if self.tenant_calls.renewal_due(accepted.lease_renewed):
            accepted.lease_renewed = time.monotonic()
            self.tenant_calls.renew_in_background(accepted.lease)

    async def finish(self, accepted: AcceptedStream) -> None:
        """Release the tenant's lease, close the upstream and record the request: exactly once, whether the body
        ran to its end, broke, or never started (the response calls this too)."""
        if accepted.closed:
            return
        accepted.closed = True
        # The final frame's clear token count; a stream that ended without one (a lost worker) is charged a lower
        # bound: every data frame after the start frame carried at least one token, unless constant-rate padding
        # may have filled ticks without text, in which case the frames prove nothing and nothing is charged.
        tokens = accepted.output_tokens
        if tokens is None:
            tokens = 0 if self.settings.stream.constant_rate else max(0, accepted.frames - 1)
        await _close(accepted.rest)
        await self.tenant_calls.settle(accepted.lease, tokens)
        e2e_ms = (time.perf_counter() - accepted.started) * 1000
        self.observer.request_finished(200, e2e_ms, accepted.frames, accepted.num_bytes)
        log_event(
            logger,
            "request_streamed",
            request_id=accepted.request_id,
            e2e_ms=round(e2e_ms, 1),
            frames=accepted.frames,
            bytes=accepted.num_bytes,
        )

    def record_refusal(self, status_code: int, started: float) -> None:
        self.observer.request_finished(status_code, (time.perf_counter() - started) * 1000, 0, 0)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _prepend(first: bytes, rest: AsyncIterator[bytes], request_id: str) -> AsyncGenerator[bytes, None]:
    """The whole stream; if the upstream breaks after the first frame, it ends with a typed error frame
    instead of a silently truncated 200."""
    try:
        yield first
        try:
            async for chunk in rest:
                yield chunk
        except Exception as exc:
            log_event(logger, "upstream_lost", level=logging.WARNING, request_id=request_id, reason=type(exc).__name__)
            yield encode_frame(make_error_frame(ErrorCode.UPSTREAM_LOST, request_id))
    finally:
        await _close(rest)


async def _close(stream: AsyncIterator[bytes]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        try:
            await close()
        except Exception as exc:  # closing a broken upstream must not mask the original outcome
            log_event(logger, "upstream_close_failed", level=logging.DEBUG, reason=type(exc).__name__)
