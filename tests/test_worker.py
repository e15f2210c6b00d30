import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from securechat.config import StreamSettings
from securechat.engine.base import EngineDeadError, EngineError, GenerationStats, SamplingParams
from securechat.envelope import Envelope, seal_request
from securechat.errors import ErrorCode
from securechat.framing import LENGTH_PREFIX, FrameDecoder, decode_frames
from securechat.host_limits import HostLimits
from securechat.keys import Suite, WorkerKeys
from securechat.request_body import RequestBody
from securechat.state import WorkerState
from securechat.stream import (
    START_FRAME,
    ErrorEvent,
    FinalEvent,
    ResponseOpener,
    StartEvent,
    TextEvent,
    Usage,
    wire_frame_sizes,
)
from securechat.worker import EnclaveWorker
from tests.fakes import ScriptedEngine


class RecordingObserver:
    def __init__(self) -> None:
        self.transitions: list[tuple[str, str]] = []
        self.finished: list[GenerationStats] = []
        self.failed: list[ErrorCode] = []

    def state_changed(self, previous: WorkerState, current: WorkerState) -> None:
        self.transitions.append((previous.value, current.value))

    def request_finished(self, stats: GenerationStats) -> None:
        self.finished.append(stats)

    def request_failed(self, code: ErrorCode) -> None:
        self.failed.append(code)


@pytest.fixture(scope="module")
def keys() -> WorkerKeys:
    return WorkerKeys.generate(tuple(Suite))  # the hybrid default and the two compatibility suites


SLOW_FLUSHES = StreamSettings(flush_interval_ms=5_000)  # after the first text, everything waits for the end


def make_worker(
    keys: WorkerKeys, engine: ScriptedEngine, stream: StreamSettings = SLOW_FLUSHES
) -> tuple[EnclaveWorker, RecordingObserver]:
    observer = RecordingObserver()
    worker = EnclaveWorker("w1", "us-west-1", engine, max_new_tokens=16, keys=keys, observer=observer, stream=stream)
    return worker, observer


def seal(keys: WorkerKeys, prompt: str = "hi", request_id: str = "req-1", suite: Suite = Suite.HPKE_MLKEM768_X25519):
    body = RequestBody.from_prompt(prompt).to_bytes()
    return seal_request(
        body,
        request_id=request_id,
        tenant_id="t1",
        mode="plain",
        region="us-west-1",
        recipients=[keys.public_key(suite)],
    )


async def collect(items: AsyncIterator[bytes]) -> list[bytes]:
    """The worker's items of wire bytes, as frames."""
    return decode_frames(b"".join([item async for item in items]))


def read(sealed, frames: list[bytes]) -> list[object]:  # type: ignore[no-untyped-def]
    """The events after the worker's start frame (asserted to come first whenever the worker held the key)."""
    opener = ResponseOpener.for_request(sealed.dek, sealed.request_id)
    events = [opener.open(frame) for frame in frames]
    if events and isinstance(events[0], StartEvent):
        return events[1:]
    assert all(isinstance(e, ErrorEvent) for e in events)  # only a worker without the key sends no start frame
    return events


@pytest.mark.parametrize("suite", list(Suite))
def test_pipeline_streams_sealed_flushes_and_metrics(keys: WorkerKeys, suite: Suite) -> None:
    engine = ScriptedEngine(delay_s=0.01)
    sealed = seal(keys, "the prompt", suite=suite)
    worker, observer = make_worker(keys, engine)
    asyncio.run(worker.start())
    frames = asyncio.run(collect(worker.run(sealed.envelope)))
    events = read(sealed, frames)
    # The first text leaves at once; the rest waits for the next tick or, here, the end.
    assert events[:2] == [TextEvent("Hello"), TextEvent(", world")]
    final = events[-1]
    assert isinstance(final, FinalEvent) and final.error is None
    assert final.metrics["output_tokens"] == 3 and final.metrics["worker_id"] == "w1"
    assert final.usage == Usage(input_tokens=3, output_tokens=3)
    data_size, final_size = wire_frame_sizes(SLOW_FLUSHES.frame_bytes)
    assert [len(f) for f in frames[1:]] == [data_size, data_size, final_size]
    assert engine.seen[-1].messages[0].content == "the prompt"
    assert observer.transitions == [
        ("MODEL_LOADING", "READY"),
        ("READY", "BUSY"),
        ("BUSY", "STREAMING"),
        ("STREAMING", "READY"),
    ]
    assert len(observer.finished) == 1
    # Metrics are the host's: token counts rounded up to the bucket, as in the final frame's clear counts.
    assert (observer.finished[0].input_tokens, observer.finished[0].output_tokens) == (64, 64)
    assert all(b"Hello" not in frame for frame in frames)


def test_envelope_for_another_worker_gets_an_error_frame(keys: WorkerKeys) -> None:
    worker, observer = make_worker(WorkerKeys.generate(), ScriptedEngine())
    asyncio.run(worker.start())
    sealed = seal(keys)
    frames = asyncio.run(collect(worker.run(sealed.envelope)))
    assert read(sealed, frames) == [ErrorEvent(code="invalid_envelope", request_id="req-1")]
    assert observer.failed == [ErrorCode.INVALID_ENVELOPE]
    assert worker.state is WorkerState.READY


def test_a_worker_runs_an_envelope_once_and_not_after_it_expires(keys: WorkerKeys) -> None:
    """The host replays an envelope to the worker that ran it, and holds one back past its expiry: both refused,
    after the envelope opened (a forged header could not take a request id's place)."""
    worker, observer = make_worker(keys, ScriptedEngine())
    asyncio.run(worker.start())
    sealed = seal(keys, request_id="once")
    first = asyncio.run(collect(worker.run(sealed.envelope)))
    assert isinstance(read(sealed, first)[-1], FinalEvent)
    again = asyncio.run(collect(worker.run(Envelope.from_bytes(sealed.envelope.to_bytes()))))
    assert read(sealed, again) == [ErrorEvent(code="replayed_envelope", request_id="once")]
    late = seal_request(
        RequestBody.from_prompt("hi").to_bytes(),
        request_id="late",
        tenant_id="t1",
        mode="plain",
        region="us-west-1",
        recipients=[keys.public_key(Suite.HPKE_MLKEM768_X25519)],
        _now=time.time() - 121,
    )
    assert read(late, asyncio.run(collect(worker.run(late.envelope)))) == [
        ErrorEvent(code="replayed_envelope", request_id="late")
    ]
    assert observer.failed == [ErrorCode.REPLAYED_ENVELOPE, ErrorCode.REPLAYED_ENVELOPE]
    assert len(observer.finished) == 1


def test_engine_error_mid_stream_gives_sealed_error_and_ready(keys: WorkerKeys) -> None:
    worker, observer = make_worker(keys, ScriptedEngine(fail_after=1, failure=EngineError("oops"), delay_s=0.01))
    asyncio.run(worker.start())
    sealed = seal(keys)
    events = read(sealed, asyncio.run(collect(worker.run(sealed.envelope))))
    assert events[0] == TextEvent("Hello")
    assert isinstance(events[-1], FinalEvent) and events[-1].error == "engine_failed"
    assert worker.state is WorkerState.READY
    assert observer.transitions[-1] == ("STREAMING", "READY")


def test_engine_death_moves_the_worker_to_failed(keys: WorkerKeys) -> None:
    worker, observer = make_worker(keys, ScriptedEngine(fail_after=0, failure=EngineDeadError("cuda")))
    asyncio.run(worker.start())
    sealed = seal(keys)
    events = read(sealed, asyncio.run(collect(worker.run(sealed.envelope))))
    assert isinstance(events[-1], FinalEvent) and events[-1].error == "engine_failed"
    assert worker.state is WorkerState.FAILED
    assert observer.transitions[-1] == ("BUSY", "FAILED")
    with pytest.raises(RuntimeError):
        worker.check_health()
    # A failed worker refuses further work with an error frame.
    sealed2 = seal(keys, request_id="req-2")
    assert read(sealed2, asyncio.run(collect(worker.run(sealed2.envelope)))) == [
        ErrorEvent(code="no_worker_available", request_id="req-2")
    ]


def test_prompt_too_long_is_reported_as_such(keys: WorkerKeys) -> None:
    worker, _ = make_worker(keys, ScriptedEngine(fail_after=0, failure=EngineError("prompt_too_long")))
    asyncio.run(worker.start())
    sealed = seal(keys)
    events = read(sealed, asyncio.run(collect(worker.run(sealed.envelope))))
    assert events == [FinalEvent({"worker_id": "w1"}, "prompt_too_long")]
    assert worker.state is WorkerState.READY


def test_engine_start_failure_is_failed_state(keys: WorkerKeys) -> None:
    worker, observer = make_worker(keys, ScriptedEngine(fail_start=True))
    with pytest.raises(EngineDeadError):
        asyncio.run(worker.start())
    assert worker.state is WorkerState.FAILED
    assert observer.transitions == [("MODEL_LOADING", "FAILED")]


def test_invalid_body_gets_sealed_error(keys: WorkerKeys) -> None:
    worker, _ = make_worker(keys, ScriptedEngine())
    asyncio.run(worker.start())
    sealed = seal_request(
        b'{"nope": 1}',
        request_id="req-9",
        tenant_id="t1",
        mode="plain",
        region="us-west-1",
        recipients=keys.public_keys,
    )
    events = read(sealed, asyncio.run(collect(worker.run(sealed.envelope))))
    detail = {"detail": {"param": None, "message": "invalid request body"}}
    assert events == [FinalEvent({"worker_id": "w1"}, "invalid_request", extra=detail)]


def test_consumer_closing_early_cancels_generation(keys: WorkerKeys) -> None:
    engine = ScriptedEngine(chunks=["a"] * 50, delay_s=0.01)
    worker, _ = make_worker(keys, engine)

    async def scenario() -> None:
        await worker.start()
        stream = worker.run(seal(keys).envelope)
        first = await anext(stream)  # the start frame and the first text: generation is under way
        assert first[LENGTH_PREFIX.size] == START_FRAME and len(FrameDecoder().feed(first)) == 2
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert engine.closed_early == 1
    assert worker.state is WorkerState.READY


def test_requests_queue_behind_the_engine_limit(keys: WorkerKeys) -> None:
    engine = ScriptedEngine(chunks=["a", "b"], delay_s=0.02)
    worker, observer = make_worker(keys, engine)

    async def scenario() -> list[list[bytes]]:
        await worker.start()
        sealed = [seal(keys, request_id=f"req-{i}") for i in range(3)]
        return await asyncio.gather(*(collect(worker.run(s.envelope)) for s in sealed))

    results = asyncio.run(scenario())
    assert all(len(frames) == 4 for frames in results)  # start, first text, the rest, final
    assert ("STREAMING", "BUSY") not in observer.transitions  # one at a time: no overlap
    assert worker.state is WorkerState.READY


def test_identity_publishes_public_keys_only(keys: WorkerKeys) -> None:
    worker, _ = make_worker(keys, ScriptedEngine())
    info = worker.identity.to_dict()
    assert info["worker_id"] == "w1" and info["region"] == "us-west-1"
    assert {k["key_id"] for k in info["keys"]} == set(keys.key_ids())
    assert Envelope  # re-exported type used by callers


def test_host_cap_on_new_tokens_wins_over_the_sealed_body(keys: WorkerKeys) -> None:
    """The tenant's max_new_tokens (a number the host may set) caps what a client-sealed body asks for."""
    engine = ScriptedEngine()
    worker, _ = make_worker(keys, engine)
    asyncio.run(worker.start())
    body = RequestBody.from_prompt("hi", SamplingParams(max_new_tokens=500)).to_bytes()
    sealed = seal_request(
        body, request_id="req-cap", tenant_id="t1", mode="plain", region="us-west-1", recipients=keys.public_keys
    )
    asyncio.run(collect(worker.run(sealed.envelope, HostLimits(max_new_tokens=3))))
    assert engine.seen[-1].sampling.max_new_tokens == 3
    asyncio.run(collect(worker.run(seal(keys, request_id="req-nocap").envelope)))
    assert engine.seen[-1].sampling.max_new_tokens == 16  # the worker's own limit when the host sets none


@pytest.mark.parametrize("temperature", ["NaN", "Infinity", "1e-300", "-1"])
def test_degenerate_sampling_is_refused_before_the_engine(keys: WorkerKeys, temperature: str) -> None:
    """A sealed body with NaN or a vanishing temperature would poison a shared batch: refused as invalid."""
    engine = ScriptedEngine()
    worker, _ = make_worker(keys, engine)
    asyncio.run(worker.start())
    body = f'{{"messages":[{{"role":"user","content":"x"}}],"temperature":{temperature}}}'.encode()
    sealed = seal_request(
        body, request_id="req-nan", tenant_id="t1", mode="plain", region="us-west-1", recipients=keys.public_keys
    )
    events = read(sealed, asyncio.run(collect(worker.run(sealed.envelope))))
    assert [(event.error, event.extra["detail"]["param"]) for event in events] == [("invalid_request", None)]
    assert engine.seen == []


def test_an_envelope_for_another_region_is_refused_unopened(keys: WorkerKeys) -> None:
    engine = ScriptedEngine()
    worker, _ = make_worker(keys, engine)
    asyncio.run(worker.start())
    body = RequestBody.from_prompt("x").to_bytes()
    sealed = seal_request(
        body, request_id="req-eu", tenant_id="t1", mode="plain", region="eu-west-1", recipients=keys.public_keys
    )
    events = read(sealed, asyncio.run(collect(worker.run(sealed.envelope))))
    assert events == [ErrorEvent(code="invalid_envelope", request_id="req-eu")] and engine.seen == []


def test_plaintext_stays_out_of_reprs() -> None:
    from securechat.engine.base import ChatMessage, TextChunk

    assert "secret" not in repr(RequestBody.from_prompt("secret prompt"))
    assert "secret" not in repr(ChatMessage("user", "secret")) and "secret" not in repr(TextChunk("secret", 1))


def test_the_workers_log_line_shows_bucketed_counts_and_no_finish_reason(
    keys: WorkerKeys, caplog: pytest.LogCaptureFixture
) -> None:
    worker, _ = make_worker(keys, ScriptedEngine())
    asyncio.run(worker.start())
    sealed = seal(keys, request_id="logged")
    with caplog.at_level("INFO", logger="securechat.worker"):
        asyncio.run(collect(worker.run(sealed.envelope)))
    [line] = [message for message in caplog.messages if message.startswith("request_done")]
    assert "input_tokens=64" in line and "output_tokens=64" in line
    assert "finish_reason" not in line and "tokens_per_sec" not in line
