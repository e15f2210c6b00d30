import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from securechat.config import DispatchSettings, StreamSettings
from securechat.dispatcher import InferenceDispatcher
from securechat.envelope import SealedRequest, seal_request
from securechat.framing import decode_frames
from securechat.keys import RecipientKey, WorkerKeys
from securechat.request_body import RequestBody
from securechat.stream import ErrorEvent, FinalEvent, ResponseOpener, StartEvent, TextEvent
from securechat.worker import EnclaveWorker
from tests.fakes import FakePool, ScriptedEngine

REGION = "us-west-1"


@pytest.fixture(scope="module")
def key_sets() -> list[WorkerKeys]:
    return [WorkerKeys.generate() for _ in range(3)]


def make_pool(key_sets: list[WorkerKeys], count: int = 2, **engine_kw: object) -> FakePool:
    """Workers whose answers are two items: the start frame with the first text ("Hello", at once), then the
    rest (", world") with the final frame, since the flush clock is far slower than the engine."""
    engine_kw = {"delay_s": 0.01, **engine_kw}
    workers = [
        EnclaveWorker(
            f"w{i}",
            REGION,
            ScriptedEngine(**engine_kw),  # type: ignore[arg-type]
            max_new_tokens=8,
            keys=key_sets[i],
            stream=StreamSettings(flush_interval_ms=5_000),
        )
        for i in range(count)
    ]
    for worker in workers:
        asyncio.run(worker.start())
    return FakePool(workers)


def seal(recipients: list[RecipientKey], request_id: str = "req-1", region: str = REGION) -> SealedRequest:
    body = RequestBody.from_prompt("hello").to_bytes()
    return seal_request(body, request_id=request_id, tenant_id="t1", mode="plain", region=region, recipients=recipients)


def run(dispatcher: InferenceDispatcher, sealed: SealedRequest) -> list[object]:
    async def go() -> bytes:
        stream: AsyncIterator[bytes] = dispatcher.dispatch(sealed.envelope.to_bytes())
        return b"".join([chunk async for chunk in stream])

    opener = ResponseOpener.for_request(sealed.dek, sealed.request_id)
    events = [opener.open(frame) for frame in decode_frames(asyncio.run(go()))]
    return [e for e in events if not isinstance(e, StartEvent)]


def keys_of(*sets: WorkerKeys) -> list[RecipientKey]:
    return [key for keys in sets for key in keys.public_keys]


def test_routes_to_a_replica_that_can_open_the_envelope(key_sets: list[WorkerKeys]) -> None:
    pool = make_pool(key_sets)
    dispatcher = InferenceDispatcher({REGION: pool})
    for i in range(4):
        events = run(dispatcher, seal(keys_of(key_sets[1]), request_id=f"req-{i}"))
        assert events[0] == TextEvent("Hello") and isinstance(events[-1], FinalEvent)
        assert events[-1].metrics["worker_id"] == "w1"
    assert set(pool.dispatched_to) == {"replica-1"}
    assert pool.reserved == {"replica-0": 0, "replica-1": 0}  # every passed-over slot was released


def test_both_replicas_serve_when_sealed_for_both(key_sets: list[WorkerKeys]) -> None:
    pool = make_pool(key_sets)
    dispatcher = InferenceDispatcher({REGION: pool})
    for i in range(4):
        assert isinstance(run(dispatcher, seal(keys_of(*key_sets[:2]), request_id=f"r{i}"))[-1], FinalEvent)
    assert set(pool.dispatched_to) == {"replica-0", "replica-1"}


def test_stale_keys_are_reported(key_sets: list[WorkerKeys]) -> None:
    dispatcher = InferenceDispatcher({REGION: make_pool(key_sets)})
    assert run(dispatcher, seal(keys_of(key_sets[2]))) == [ErrorEvent("stale_keys", "req-1")]


def test_replica_lost_before_first_frame_is_retried(key_sets: list[WorkerKeys]) -> None:
    pool = make_pool(key_sets)
    pool.die_before_first_frame.add("replica-0")
    dispatcher = InferenceDispatcher({REGION: pool})
    events = run(dispatcher, seal(keys_of(*key_sets[:2])))
    assert isinstance(events[-1], FinalEvent) and events[-1].metrics["worker_id"] == "w1"
    assert pool.dispatched_to == ["replica-0", "replica-1"]


def test_replica_lost_mid_stream_gives_a_typed_error_frame(key_sets: list[WorkerKeys]) -> None:
    pool = make_pool(key_sets)
    pool.die_after_items["replica-0"] = 1  # after the first item: the start frame with the first text
    pool.die_after_items["replica-1"] = 1
    dispatcher = InferenceDispatcher({REGION: pool})
    events = run(dispatcher, seal(keys_of(*key_sets[:2])))
    assert events == [TextEvent("Hello"), ErrorEvent("worker_lost", "req-1")]
    assert len(pool.dispatched_to) == 1  # never re-sent once frames reached the client


def test_every_replica_lost_means_no_worker(key_sets: list[WorkerKeys]) -> None:
    pool = make_pool(key_sets)
    pool.die_before_first_frame.update({"replica-0", "replica-1"})
    dispatcher = InferenceDispatcher({REGION: pool}, DispatchSettings(max_attempts=3))
    assert run(dispatcher, seal(keys_of(*key_sets[:2]))) == [ErrorEvent("no_worker_available", "req-1")]
    assert len(pool.dispatched_to) == 3


def test_replayed_request_id_is_refused(key_sets: list[WorkerKeys]) -> None:
    dispatcher = InferenceDispatcher({REGION: make_pool(key_sets)})
    sealed = seal(keys_of(key_sets[0]))
    assert isinstance(run(dispatcher, sealed)[-1], FinalEvent)
    assert run(dispatcher, sealed) == [ErrorEvent("duplicate_request", "req-1")]


def test_unknown_region_and_garbage(key_sets: list[WorkerKeys]) -> None:
    dispatcher = InferenceDispatcher({REGION: make_pool(key_sets)})
    assert run(dispatcher, seal(keys_of(key_sets[0]), region="mars-1")) == [ErrorEvent("unknown_region", "req-1")]

    async def garbage() -> bytes:
        return b"".join([c async for c in dispatcher.dispatch(b"{not json")])

    opener = ResponseOpener.for_request(b"\0" * 32, "unknown")
    assert [opener.open(f) for f in decode_frames(asyncio.run(garbage()))] == [
        ErrorEvent("invalid_envelope", "unknown")
    ]


def test_key_directory_lists_public_identities(key_sets: list[WorkerKeys]) -> None:
    dispatcher = InferenceDispatcher({REGION: make_pool(key_sets)})
    directory = asyncio.run(dispatcher.key_directory(REGION))
    assert [w["worker_id"] for w in directory] == ["w0", "w1"]
    assert all(w["state"] == "READY" for w in directory)
    assert asyncio.run(dispatcher.key_directory("nowhere")) == []


def test_in_flight_requests_are_bounded(key_sets: list[WorkerKeys]) -> None:
    pool = make_pool(key_sets, delay_s=0.05)
    dispatcher = InferenceDispatcher({REGION: pool}, DispatchSettings(max_in_flight=2))

    async def scenario() -> list[list[object]]:
        sealed = [seal(keys_of(*key_sets[:2]), request_id=f"r{i}") for i in range(3)]

        async def one(s: SealedRequest) -> list[object]:
            raw = b"".join([chunk async for chunk in dispatcher.dispatch(s.envelope.to_bytes())])
            opener = ResponseOpener.for_request(s.dek, s.request_id)
            return [opener.open(frame) for frame in decode_frames(raw)]

        return await asyncio.gather(*(one(s) for s in sealed))

    results = asyncio.run(scenario())
    assert sum(isinstance(r[-1], FinalEvent) for r in results) == 2
    assert [ErrorEvent("overloaded", "r2")] in results
    assert dispatcher.num_in_flight == 0


def test_choose_timeout_is_overloaded(key_sets: list[WorkerKeys]) -> None:
    class NeverFree(FakePool):
        def choose(self) -> object:
            @contextlib.asynccontextmanager
            async def wait_forever() -> AsyncIterator[object]:
                await asyncio.sleep(10)
                yield None

            return wait_forever()

    dispatcher = InferenceDispatcher({REGION: NeverFree([])}, DispatchSettings(choose_timeout_s=0.05))
    assert run(dispatcher, seal(keys_of(key_sets[0]))) == [ErrorEvent("overloaded", "req-1")]
