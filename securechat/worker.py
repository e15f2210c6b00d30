"""The enclave side of a request: open the envelope, run the engine, seal every flush of text.

``EnclaveWorker`` is the plain-Python core of a worker replica; the Ray deployment is a thin wrapper. It is the
only place where plaintext exists, and it keeps it for the life of one request. What leaves it is wire bytes:
one item per flush (``securechat.pacing``), each item one or more length-prefixed frames of one fixed size.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, Protocol

from securechat.attestation import Attester
from securechat.config import SealingSettings, StreamSettings
from securechat.deltas import DeltaAssembler
from securechat.engine.base import Engine, EngineDeadError, EngineError, GenerationStats
from securechat.envelope import Envelope, open_request
from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.framing import encode_frame
from securechat.host_limits import HostLimits
from securechat.keys import RecipientKey, WorkerKeys
from securechat.logs import get_logger, log_event
from securechat.pacing import paced
from securechat.rag.modes import COLLECTION_MODES, Answer, CollectionModes, Refused
from securechat.replay import ReplayGuard, ReplayVerdict
from securechat.request_body import InvalidRequestBody, RequestBody
from securechat.state import StateMachine, WorkerState
from securechat.stream import ResponseSealer, Usage, make_error_frame
from securechat.structured.schemas import UnsupportedSchema

logger = get_logger("worker")


class WorkerObserver(Protocol):
    """Content-free hooks for metrics. Implementations must be cheap and must not raise."""

    def state_changed(self, previous: WorkerState, current: WorkerState) -> None: ...

    def request_finished(self, stats: GenerationStats) -> None: ...

    def request_failed(self, code: ErrorCode) -> None: ...


class NullObserver:
    def state_changed(self, previous: WorkerState, current: WorkerState) -> None:
        pass

    def request_finished(self, stats: GenerationStats) -> None:
        pass

    def request_failed(self, code: ErrorCode) -> None:
        pass


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """What a worker publishes about itself: no secrets."""

    worker_id: str
    region: str
    public_keys: tuple[RecipientKey, ...]
    platform: str = "simulated"  # what attests it (attestation.platform): simulated, emulated-sev-snp, sev-snp, tdx

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "region": self.region,
            "platform": self.platform,
            "keys": [key.to_dict() for key in self.public_keys],
        }


class EnclaveWorker:
    def __init__(
        self,
        worker_id: str,
        region: str,
        engine: Engine,
        max_new_tokens: int,
        *,
        platform: str = "simulated",
        keys: WorkerKeys | None = None,
        observer: WorkerObserver | None = None,
        attester_factory: Callable[[WorkerIdentity], Attester] | None = None,
        stream: StreamSettings | None = None,
        collections: CollectionModes | None = None,
        replay: ReplayGuard | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.region = region
        self.platform = platform
        self._engine = engine
        self._max_new_tokens = max_new_tokens
        self._keys = keys or WorkerKeys.generate()
        self._observer: WorkerObserver = observer or NullObserver()
        self._machine = StateMachine()
        self._machine.subscribe(self._on_transition)
        self._slots = asyncio.Semaphore(engine.max_concurrent_requests)
        self._num_active = 0
        self._num_streaming = 0
        self._attester_factory = attester_factory
        self._attester: Attester | None = None
        self._stream = stream or StreamSettings()
        self._collections = collections  # None: this worker serves plain chat only
        sealing = SealingSettings()
        self._replay = replay or ReplayGuard(sealing.envelope_max_ttl_s, sealing.replay_cache_entries)

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def state(self) -> WorkerState:
        return self._machine.state

    @property
    def identity(self) -> WorkerIdentity:
        return WorkerIdentity(self.worker_id, self.region, self._keys.public_keys, self.platform)

    async def start(self) -> None:
        started = time.perf_counter()
        try:
            await self._engine.start()
        except Exception as exc:
            self._machine.transition(WorkerState.FAILED)
            log_event(
                logger, "engine_start_failed", level=logging.ERROR, worker_id=self.worker_id, reason=type(exc).__name__
            )
            raise EngineDeadError("engine failed to start") from None
        if self._attester_factory is not None:
            # Endorsed once, after the model is in place (it is measured), for exactly these keys. The factory
            # may touch the platform root; the attester keeps only its own attestation key.
            try:
                self._attester = self._attester_factory(self.identity)
            except Exception as exc:
                self._machine.transition(WorkerState.FAILED)
                log_event(
                    logger,
                    "attestation_setup_failed",
                    level=logging.ERROR,
                    worker_id=self.worker_id,
                    reason=type(exc).__name__,
                )
                raise EngineDeadError("attestation setup failed") from None
        self._machine.transition(WorkerState.READY)
        load_ms = (time.perf_counter() - started) * 1000
        log_event(
            logger,
            "worker_ready",
            worker_id=self.worker_id,
            load_ms=round(load_ms, 1),
            num_keys=len(self._keys.public_keys),
        )

    def attest(self, nonce: str) -> dict[str, Any]:
        """This worker's attestation document answering ``nonce``. Fails closed when attestation is not set up."""
        if self._attester is None:
            raise RuntimeError("attestation is not configured for this worker")
        return self._attester.attest(nonce).to_dict()

    def check_health(self) -> None:
        """Raise if this replica cannot serve (Serve's health check calls this)."""
        if self.state in (WorkerState.FAILED, WorkerState.MODEL_LOADING):
            raise RuntimeError(f"worker state {self.state}")

    async def close(self) -> None:
        await self._engine.close()

    # -- one request -------------------------------------------------------------------------------------
    async def run(self, envelope: Envelope, limits: HostLimits | None = None) -> AsyncGenerator[bytes, None]:
        """Yield the response for one envelope as wire bytes: one item per flush, the first led by the start
        frame (not an item of its own: each item costs every process it crosses, about a millisecond).

        ``limits`` are the tenant's policy, set by the host (numbers, not content, so the host may decide them):
        ``max_new_tokens`` caps the answer below this worker's own limit, the others bound an ingest.
        """
        limits = limits or HostLimits()
        if limits.max_new_tokens is not None:
            max_new_tokens = min(self._max_new_tokens, limits.max_new_tokens)
        else:
            max_new_tokens = self._max_new_tokens
        request_id = envelope.header.request_id
        if self.state not in (WorkerState.READY, WorkerState.BUSY, WorkerState.STREAMING):
            yield self._refusal(ErrorCode.NO_WORKER, request_id)
            return
        if envelope.header.region != self.region:  # a request only ever runs in the region its sender chose
            yield self._refusal(ErrorCode.INVALID_ENVELOPE, request_id)
            return
        try:
            opened = open_request(envelope, self._keys)
        except InvalidCiphertext:
            yield self._refusal(ErrorCode.INVALID_ENVELOPE, request_id, logged=True)
            return
        # After opening: only an authenticated header may take a place in the replay memory.
        header = opened.header
        verdict = self._replay.admit(header.tenant_id, request_id, header.expires_at)
        if verdict is not ReplayVerdict.ADMITTED:
            yield self._refusal(ErrorCode.REPLAYED_ENVELOPE, request_id, logged=True, reason=verdict.value)
            return
        mode = envelope.header.mode
        if mode == "plain":
            async with aclosing(self._run_plain(opened.dek, opened.body, request_id, max_new_tokens)) as items:
                async for item in items:
                    yield item
            return
        if self._collections is None or mode not in COLLECTION_MODES:
            yield self._refusal(ErrorCode.MODE_NOT_SUPPORTED, request_id)
            return
        self._enter()
        try:
            prepared = await self._collections.prepare(header, opened.body, limits, max_new_tokens)
        except Refused as refused:
            log_event(
                logger,
                "request_refused",
                request_id=request_id,
                worker_id=self.worker_id,
                error_code=refused.code.value,
            )
            if refused.invalid is not None:  # what is wrong with the body goes sealed, to the client only
                sealer = self._sealer(opened.dek, request_id)
                yield encode_frame(sealer.start_frame) + self._refuse_sealed(sealer, refused.invalid)
                return
            yield self._refusal(refused.code, request_id)
            return
        finally:
            self._leave(streaming=False)
        sealer = self._sealer(opened.dek, request_id)
        start = encode_frame(sealer.start_frame)
        if isinstance(prepared, Answer):
            metrics = {"worker_id": self.worker_id}
            usage = Usage(prepared.input_tokens, 0)
            yield start + _wire(sealer.seal_final(metrics, usage=usage, extra={"result": prepared.result}))
            return
        generated = self._generate(prepared.body, request_id, sealer, prepared.trailer)
        async with self._slots, aclosing(_after(start, generated)) as items:
            async for item in items:
                yield item

    def _refusal(self, code: ErrorCode, request_id: str, *, logged: bool = False, **fields: str) -> bytes:
        """A refusal in the clear (nothing was sealed yet): counted, logged as ``envelope_refused`` when
        ``logged``, as one error frame of wire bytes."""
        if logged:
            log_event(
                logger,
                "envelope_refused",
                level=logging.WARNING,
                request_id=request_id,
                worker_id=self.worker_id,
                error_code=code.value,
                **fields,
            )
        self._observer.request_failed(code)
        return encode_frame(make_error_frame(code, request_id))

    def _sealer(self, dek: bytes, request_id: str) -> ResponseSealer:
        # A fresh salt: this run's key is never reused.
        return ResponseSealer(dek, request_id, self._stream.frame_bytes, self._stream.usage_bucket_tokens)

    async def _run_plain(
        self, dek: bytes, body_bytes: bytes, request_id: str, max_new_tokens: int
    ) -> AsyncGenerator[bytes, None]:
        sealer = self._sealer(dek, request_id)
        start = encode_frame(sealer.start_frame)
        try:
            body = RequestBody.from_bytes(body_bytes, max_new_tokens)
        except InvalidRequestBody as invalid:  # sealed: the host does not learn that the body was malformed
            yield start + self._refuse_sealed(sealer, invalid)
            return
        # aclosing: when the consumer goes away, the engine stops before the slot is released, not after.
        async with self._slots, aclosing(_after(start, self._generate(body, request_id, sealer))) as items:
            async for item in items:
                yield item

    def _refuse_sealed(self, sealer: ResponseSealer, invalid: InvalidRequestBody) -> bytes:
        """A request this worker cannot honour, refused inside the sealed stream: what is wrong (a field, a
        schema keyword) reaches the client only; the host sees an answer that ended."""
        self._observer.request_failed(ErrorCode.INVALID_REQUEST)
        metrics = {"worker_id": self.worker_id}
        return _wire(sealer.seal_final(metrics, ErrorCode.INVALID_REQUEST, extra={"detail": invalid.detail()}))

    def _grammar(self, body: RequestBody) -> str | None:
        """The grammar of ``body``'s output, or InvalidRequestBody (sealed) when it cannot be kept here."""
        if not body.output.constrained:
            return None
        if not self._engine.supports_grammar:
            param = "tools" if body.output.calls_tools else "response_format"
            raise InvalidRequestBody("this worker's engine does not constrain its output", param)
        # Imported here: xgrammar brings torch, which the package's client side (``import securechat``) must not.
        from securechat.structured.grammar import output_grammar

        try:
            return output_grammar(body.output)
        except UnsupportedSchema as unsupported:
            raise InvalidRequestBody(str(unsupported), unsupported.keyword) from None

    async def _generate(
        self, body: RequestBody, request_id: str, sealer: ResponseSealer, trailer: dict[str, Any] | None = None
    ) -> AsyncGenerator[bytes, None]:
        try:
            grammar = self._grammar(body)
        except InvalidRequestBody as invalid:
            yield self._refuse_sealed(sealer, invalid)
            return
        self._enter()
        streaming = False
        # An extended answer (choices, log probabilities, tools) goes as deltas; a plain one as text.
        assembler = DeltaAssembler(parse_tools=body.output.calls_tools) if body.extended else None
        try:
            # The engine may hand over text every half interval: each flush then finds what the engine made.
            interval = self._stream.flush_interval_s / 2
            request = body.to_generation_request(request_id, delivery_interval_s=interval, grammar=grammar)
            generation = self._engine.generate(request)
            flushes = paced(generation, self._stream.flush_interval_s, constant_rate=self._stream.constant_rate)
            async with aclosing(flushes) as paced_flushes:
                async for flush in paced_flushes:
                    if assembler is not None:
                        deltas = assembler.deltas(flush.chunks)
                        frames = sealer.seal_deltas(deltas) if deltas or flush.stats is None else []
                    else:
                        text = flush.text
                        frames = sealer.seal_text(text) if text or flush.stats is None else []
                    if frames and not streaming:
                        streaming = True
                        self._start_streaming()
                    if flush.stats is not None:
                        stats = flush.stats
                        usage = Usage(stats.input_tokens, stats.output_tokens)
                        self._report_done(request_id, stats, usage)
                        metrics = {"worker_id": self.worker_id, **stats.as_dict()}
                        frames += sealer.seal_final(metrics, usage=usage, extra=trailer)
                    yield _wire(frames)
        except EngineError as exc:
            dead = isinstance(exc, EngineDeadError)
            codes = {"prompt_too_long": ErrorCode.PROMPT_TOO_LONG, "grammar_invalid": ErrorCode.INVALID_REQUEST}
            code = codes.get(str(exc), ErrorCode.ENGINE_FAILED)
            log_event(
                logger,
                "request_failed",
                level=logging.ERROR if dead else logging.WARNING,
                request_id=request_id,
                worker_id=self.worker_id,
                error_code=code.value,
            )
            self._observer.request_failed(code)
            if dead:
                self._machine.transition(WorkerState.FAILED)
            yield _wire(sealer.seal_final({"worker_id": self.worker_id}, code))
        finally:
            self._leave(streaming)

    def _report_done(self, request_id: str, stats: GenerationStats, usage: Usage) -> None:
        """Metrics and the log line: what the host sees, so token counts are rounded up to the bucket (as in the
        final frame) and the finish reason is left out; the exact figures are only in the sealed trailer."""
        billed = usage.rounded_up(self._stream.usage_bucket_tokens)
        host_stats = replace(stats, input_tokens=billed.input_tokens, output_tokens=billed.output_tokens)
        self._observer.request_finished(host_stats)
        log_event(
            logger,
            "request_done",
            request_id=request_id,
            worker_id=self.worker_id,
            ttft_ms=round(host_stats.ttft_ms, 3),
            total_ms=round(host_stats.total_ms, 3),
            input_tokens=host_stats.input_tokens,
            output_tokens=host_stats.output_tokens,
        )

    # -- state bookkeeping: READY when idle, STREAMING while any request streams, else BUSY ------------------
    def _enter(self) -> None:
        self._num_active += 1
        self._sync_state()

    def _start_streaming(self) -> None:
        self._num_streaming += 1
        self._sync_state()

    def _leave(self, streaming: bool) -> None:
        self._num_active -= 1
        self._num_streaming -= int(streaming)
        self._sync_state()

    def _sync_state(self) -> None:
        if self.state is WorkerState.FAILED:
            return
        if self._num_active == 0:
            target = WorkerState.READY
        elif self._num_streaming > 0:
            target = WorkerState.STREAMING
        else:
            target = WorkerState.BUSY
        if target is not self.state:
            self._machine.transition(target)

    def _on_transition(self, previous: WorkerState, current: WorkerState) -> None:
        log_event(
            logger,
            "worker_state",
            level=logging.DEBUG,
            worker_id=self.worker_id,
            from_state=previous.value,
            to_state=current.value,
        )
        self._observer.state_changed(previous, current)


def _wire(payloads: list[bytes]) -> bytes:
    """Sealed frame payloads as one item of wire bytes (each length-prefixed)."""
    return b"".join(encode_frame(payload) for payload in payloads)


async def _after(start: bytes, items: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """``items`` with ``start`` in front of the first (alone, if there is none); closes ``items`` when closed."""
    async with aclosing(items) as opened:
        async for item in opened:
            yield start + item
            start = b""
    if start:
        yield start
