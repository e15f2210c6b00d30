"""The HTTP API over an in-process dispatcher: every documented answer, no Ray needed."""

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from securechat.config import AppSettings, GatewaySettings, RegionSettings, SealingSettings, StreamSettings
from securechat.dispatcher import InferenceDispatcher
from securechat.envelope import seal_request
from securechat.framing import decode_frames
from securechat.gateway.app import create_app
from securechat.gateway.backend import LocalBackend
from securechat.gateway.service import GatewayService
from securechat.host_limits import HostLimits
from securechat.keys import RecipientKey, Suite, WorkerKeys
from securechat.request_body import RequestBody
from securechat.response import read_completion
from securechat.stream import Usage, read_usage
from securechat.tenants.auth import AuthMode, AuthSettings
from securechat.tenants.tenancy import Tenancy, build_tenancy
from securechat.worker import EnclaveWorker
from tests.fakes import FakePool, ScriptedEngine

REGIONS = ("us-west-1", "eu-west-1")
PLAIN = {"tenant_id": "tenant1", "prompt": "Explain transformers.", "mode": "plain", "region": "us-west-1"}


def dev_tenancy(settings: AppSettings) -> Tenancy:
    """Authentication off (the development setting); tests/test_gateway_auth.py covers it on."""
    return build_tenancy(AuthSettings(mode=AuthMode.DISABLED), settings.tenants)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def request_finished(self, status_code: int, e2e_ms: float, frames: int, num_bytes: int) -> None:
        self.calls.append((status_code, frames, num_bytes))


@pytest.fixture(scope="module")
def key_sets() -> list[WorkerKeys]:
    return [WorkerKeys.generate() for _ in range(2)]


@pytest.fixture
def stack(key_sets: list[WorkerKeys]) -> Iterator[tuple[httpx.AsyncClient, FakePool, Recorder]]:
    # Each answer leaves as two items after the start frame: "Hello" at once, then ", world" with the final
    # frame (the flush clock is far slower than the engine).
    slow_flushes = StreamSettings(flush_interval_ms=5_000)
    workers = [
        EnclaveWorker(f"w{i}", "us-west-1", ScriptedEngine(delay_s=0.01), 8, keys=k, stream=slow_flushes)
        for i, k in enumerate(key_sets)
    ]
    for worker in workers:
        asyncio.run(worker.start())
    pool = FakePool(workers)
    empty = FakePool([])
    settings = AppSettings(
        regions=tuple(RegionSettings(name=r) for r in REGIONS), gateway=GatewaySettings(max_prompt_chars=100)
    )
    app = create_app()
    recorder = Recorder()
    backend = LocalBackend(InferenceDispatcher({"us-west-1": pool, "eu-west-1": empty}))
    app.state.service = GatewayService(settings, backend, dev_tenancy(settings), recorder)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    yield client, pool, recorder


def call(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    return asyncio.run(client.request(method, url, **kw))


def recipients(client: httpx.AsyncClient) -> list[RecipientKey]:
    workers = call(client, "GET", "/v1/keys", params={"region": "us-west-1"}).json()["workers"]
    return [RecipientKey.from_dict(k) for w in workers for k in w["keys"]]


def test_plain_prompt_returns_well_formed_frames(stack: Any) -> None:
    client, _, recorder = stack
    response = call(client, "POST", "/infer", json=PLAIN)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    frames = decode_frames(response.content)
    assert [f[0] for f in frames] == [0x03, 0x01, 0x01, 0x04]  # start, "Hello", ", world", final
    assert len(frames[1]) == len(frames[2])  # one size, whatever the text
    assert b"Hello" not in response.content
    assert recorder.calls == [(200, 4, len(response.content))]


def test_client_sealed_request_decrypts_to_the_output(stack: Any) -> None:
    client, _, _ = stack
    body = RequestBody.from_prompt("secret").to_bytes()
    sealed = seal_request(
        body,
        request_id="client-req-1",
        tenant_id="tenant1",
        mode="plain",
        region="us-west-1",
        recipients=recipients(client),
    )
    payload = {
        "tenant_id": "tenant1",
        "mode": "plain",
        "region": "us-west-1",
        "envelope": sealed.envelope.to_dict(),
    }
    response = call(client, "POST", "/infer", json=payload)
    assert response.status_code == 200 and response.headers["x-request-id"] == "client-req-1"
    completion = read_completion([response.content], sealed)
    assert completion.text == "Hello, world" and completion.metrics["output_tokens"] == 3


def test_the_host_sees_token_counts_rounded_up_to_buckets_and_the_client_exact_ones(stack: Any) -> None:
    """What the gateway reads from the final frame (and charges the tenant's limits with) is a multiple of 64;
    the client's exact counts come from the sealed trailer."""
    client, _, _ = stack
    body = RequestBody.from_prompt("secret").to_bytes()
    sealed = seal_request(
        body,
        request_id="bucketed-1",
        tenant_id="tenant1",
        mode="plain",
        region="us-west-1",
        recipients=recipients(client),
    )
    payload = {"tenant_id": "tenant1", "mode": "plain", "region": "us-west-1", "envelope": sealed.envelope.to_dict()}
    response = call(client, "POST", "/infer", json=payload)
    assert read_usage(decode_frames(response.content)[-1]) == Usage(64, 64)
    completion = read_completion([response.content], sealed)
    assert (completion.metrics["input_tokens"], completion.metrics["output_tokens"]) == (3, 3)


def test_sse_streams_decrypted_text_for_gateway_sealed_prompts(stack: Any) -> None:
    client, _, _ = stack
    response = call(client, "POST", "/infer", json=PLAIN, headers={"Accept": "text/event-stream"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in response.text.strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    assert names == ["token", "token", "done"]
    assert "".join(json.loads(e[1].removeprefix("data: "))["text"] for e in events[:2]) == "Hello, world"


def test_sse_is_refused_for_client_sealed_envelopes(stack: Any) -> None:
    client, _, _ = stack
    sealed = seal_request(
        b"{}", request_id="r-sse", tenant_id="tenant1", mode="plain", region="us-west-1", recipients=recipients(client)
    )
    payload = {"tenant_id": "tenant1", "region": "us-west-1", "envelope": sealed.envelope.to_dict()}
    response = call(client, "POST", "/infer", json=payload, headers={"Accept": "text/event-stream"})
    assert response.status_code == 406 and response.json()["error"] == "not_acceptable"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422, "invalid_request"),
        ({"json": {**PLAIN, "tenant_id": "bad tenant!"}}, 422, "invalid_request"),
        ({"json": {**PLAIN, "mode": "creative"}}, 422, "invalid_request"),
        ({"json": {k: v for k, v in PLAIN.items() if k != "prompt"}}, 422, "invalid_request"),
        ({"json": {**PLAIN, "unexpected": 1}}, 422, "invalid_request"),
        ({"json": {**PLAIN, "temperature": 1e-300}}, 422, "invalid_request"),
        (
            {"content": json.dumps({**PLAIN, "top_p": float("nan")}), "headers": {"Content-Type": "application/json"}},
            422,
            "invalid_request",
        ),
        ({"json": {**PLAIN, "prompt": "x" * 101}}, 413, "prompt_too_long"),
        (
            {
                "content": b"x" * (GatewaySettings().max_envelope_bytes + 1),
                "headers": {"Content-Type": "application/json"},
            },
            413,
            "payload_too_large",
        ),
        (
            {"content": json.dumps(PLAIN), "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ({"json": {**PLAIN, "region": "mars-1"}}, 400, "unknown_region"),
        ({"json": {**PLAIN, "mode": "rag"}}, 422, "invalid_request"),  # a rag request names its collection
        (
            {"json": {**PLAIN, "mode": "rag", "collection_id": "col1", "collection_key": "A" * 44}},
            501,
            "mode_not_supported",
        ),
        ({"json": {**PLAIN, "region": "eu-west-1"}}, 503, "no_worker_available"),
    ],
)
def test_bad_input_gets_its_documented_answer(stack: Any, kwargs: dict[str, Any], status: int, code: str) -> None:
    client, _, recorder = stack
    response = call(client, "POST", "/infer", **kwargs)
    assert response.status_code == status
    body = response.json()
    assert body["error"] == code and body["message"]
    assert ("retry-after" in response.headers) == (status == 503)
    assert "Explain" not in response.text  # no error body echoes the prompt
    assert recorder.calls[-1][0] == status


def test_validation_errors_do_not_echo_input(stack: Any) -> None:
    client, _, _ = stack
    response = call(client, "POST", "/infer", json={**PLAIN, "prompt": 12345678, "temperature": "hot"})
    assert response.status_code == 422
    assert "12345678" not in response.text and "hot" not in response.text
    assert {tuple(f["loc"]) for f in response.json()["fields"]} == {("prompt",), ("temperature",)}


def test_tampered_and_unknown_key_envelopes(stack: Any, key_sets: list[WorkerKeys]) -> None:
    client, _, _ = stack
    sealed = seal_request(
        b'{"messages":[]}',
        request_id="r-tamper",
        tenant_id="tenant1",
        mode="plain",
        region="us-west-1",
        recipients=key_sets[0].public_keys[:1],
    )
    envelope = sealed.envelope.to_dict()
    tampered = {**envelope, "ciphertext": envelope["ciphertext"][:-4] + "AAAA"}
    base = {"tenant_id": "tenant1", "region": "us-west-1"}
    response = call(client, "POST", "/infer", json={**base, "envelope": tampered})
    # Only the enclave can tell: its refusal comes back before any data, so the gateway answers 400.
    assert response.status_code == 400 and response.json()["error"] == "invalid_envelope"
    stranger = WorkerKeys.generate()
    foreign = seal_request(
        b"{}",
        request_id="r-foreign",
        tenant_id="tenant1",
        mode="plain",
        region="us-west-1",
        recipients=stranger.public_keys,
    )
    response = call(client, "POST", "/infer", json={**base, "envelope": foreign.envelope.to_dict()})
    assert response.status_code == 409 and response.json()["error"] == "stale_keys"
    response = call(client, "POST", "/infer", json={**base, "envelope": {"header": "e30="}})
    assert response.status_code == 400 and response.json()["error"] == "invalid_envelope"
    response = call(client, "POST", "/infer", json={**base, "tenant_id": "tenant2", "envelope": envelope})
    assert response.status_code == 400  # header says another tenant


def test_replayed_envelope_is_refused(stack: Any) -> None:
    client, _, _ = stack
    sealed = seal_request(
        RequestBody.from_prompt("x").to_bytes(),
        request_id="r-replay",
        tenant_id="tenant1",
        mode="plain",
        region="us-west-1",
        recipients=recipients(client),
    )
    payload = {"tenant_id": "tenant1", "region": "us-west-1", "envelope": sealed.envelope.to_dict()}
    assert call(client, "POST", "/infer", json=payload).status_code == 200
    second = call(client, "POST", "/infer", json=payload)
    assert second.status_code == 409 and second.json()["error"] == "duplicate_request"


def test_workers_endpoint_lists_state_without_secrets(stack: Any, key_sets: list[WorkerKeys]) -> None:
    client, _, _ = stack
    body = call(client, "GET", "/v1/workers").json()
    assert [w["worker_id"] for w in body["regions"]["us-west-1"]] == ["w0", "w1"]
    assert body["regions"]["eu-west-1"] == []
    assert all(w["state"] == "READY" for w in body["regions"]["us-west-1"])
    assert set(body["regions"]["us-west-1"][0]) == {"worker_id", "region", "state", "platform", "key_ids"}
    assert {w["platform"] for w in body["regions"]["us-west-1"]} == {"simulated"}  # says so: no hardware


def test_mid_stream_loss_reaches_the_client_as_an_error_frame(stack: Any) -> None:
    client, pool, _ = stack
    pool.die_after_items = {"replica-0": 1, "replica-1": 1}  # after the first item (start frame + first text)
    response = call(client, "POST", "/infer", json=PLAIN)
    assert response.status_code == 200
    frames = decode_frames(response.content)
    assert frames[-1][0] == 0x02 and json.loads(frames[-1][1:])["code"] == "worker_lost"


def test_attestation_endpoint_returns_documents_bound_to_the_nonce(tmp_path: Any) -> None:
    from securechat.attestation import Attester, ensure_root

    root = ensure_root(tmp_path / "root.pem")
    workers = [
        EnclaveWorker(
            f"w{i}", "us-west-1", ScriptedEngine(), 8,
            attester_factory=lambda identity: Attester.simulated(root, identity, {"code": "00" * 32}, key_ttl_s=600),
        )
        for i in range(2)
    ]  # fmt: skip
    for worker in workers:
        asyncio.run(worker.start())
    app = create_app()
    settings = AppSettings(regions=(RegionSettings(name="us-west-1"),))
    backend = LocalBackend(InferenceDispatcher({"us-west-1": FakePool(workers)}))
    app.state.service = GatewayService(settings, backend, dev_tenancy(settings))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    nonce = "ab" * 16
    body = call(client, "GET", "/v1/attestation", params={"region": "us-west-1", "nonce": nonce}).json()
    assert body["nonce"] == nonce and [d["worker_id"] for d in body["documents"]] == ["w0", "w1"]
    assert all(d["nonce"] == nonce for d in body["documents"])
    bad = call(client, "GET", "/v1/attestation", params={"region": "us-west-1", "nonce": "not-hex-SECRET"})
    assert bad.status_code == 422 and "SECRET" not in bad.text and bad.json()["error"] == "invalid_request"
    unknown = call(client, "GET", "/v1/attestation", params={"region": "mars-1", "nonce": nonce})
    assert unknown.status_code == 400
    every_region = call(client, "GET", "/v1/attestation", params={"nonce": nonce}).json()
    assert every_region["region"] is None and len(every_region["documents"]) == 2


class BreakingBackend(LocalBackend):
    """The orchestrator hop fails: before its first frame, or after ``after`` frames."""

    def __init__(self, inner: LocalBackend, after: int) -> None:
        self.__dict__.update(inner.__dict__)
        self.after = after

    async def infer(self, envelope: bytes, limits: HostLimits | None = None) -> Any:  # type: ignore[override]
        count = 0
        async for frame in super().infer(envelope, limits):
            if count == self.after:
                raise RuntimeError("actor died")
            count += 1
            yield frame


@pytest.mark.parametrize("after", [0, 1])
def test_orchestrator_loss_is_never_a_silent_truncation(stack: Any, after: int) -> None:
    client, _, _ = stack
    service = client._transport.app.state.service
    service.backend = BreakingBackend(service.backend, after)
    response = call(client, "POST", "/infer", json=PLAIN)
    if after == 0:  # nothing streamed yet: a retryable 503
        assert response.status_code == 503 and response.json()["error"] == "upstream_lost"
        assert "retry-after" in response.headers
    else:
        frames = decode_frames(response.content)
        assert response.status_code == 200 and frames[-1][0] == 0x02
        assert json.loads(frames[-1][1:])["code"] == "upstream_lost"


class CorruptingBackend(LocalBackend):
    """Flips the last byte of the second item (the final frame's tag) on its way through (a broken or malicious
    hop)."""

    def __init__(self, inner: LocalBackend) -> None:
        self.__dict__.update(inner.__dict__)

    async def infer(self, envelope: bytes, limits: HostLimits | None = None) -> Any:  # type: ignore[override]
        index = 0
        async for frame in super().infer(envelope, limits):
            index += 1
            yield frame[:-1] + bytes([frame[-1] ^ 1]) if index == 2 else frame


def test_sse_stream_that_fails_verification_ends_with_an_error_event(stack: Any) -> None:
    client, _, _ = stack
    service = client._transport.app.state.service
    service.backend = CorruptingBackend(service.backend)
    response = call(client, "POST", "/infer", json=PLAIN, headers={"Accept": "text/event-stream"})
    events = [block.split("\n")[0] for block in response.text.strip().split("\n\n")]
    assert events == ["event: token", "event: token", "event: error"]  # verified text, then an explicit failure


def test_a_response_that_never_starts_still_releases_its_lease(stack: Any) -> None:
    """The client leaves before the first byte: the body generator never runs, the response still finishes."""
    from starlette.requests import ClientDisconnect

    from securechat.gateway.app import FinishingStreamingResponse
    from securechat.gateway.schemas import InferRequest

    client, _, _ = stack
    service = client._transport.app.state.service

    async def scenario() -> int:
        accepted = await service.accept(InferRequest.model_validate(PLAIN), want_plaintext=False)
        response = FinishingStreamingResponse(service.framed_body(accepted), lambda: service.finish(accepted))

        async def send(message: Any) -> None:
            raise OSError("client went away")

        async def receive() -> Any:
            return {"type": "http.disconnect"}

        with pytest.raises((OSError, ClientDisconnect, ExceptionGroup)):  # starlette reports it as a disconnect
            await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        assert accepted.closed
        open_after_response = int(service.tenancy.limiter.open_streams("tenant1"))
        await service.finish(accepted)  # idempotent
        return open_after_response

    assert asyncio.run(scenario()) == 0


@pytest.mark.parametrize(
    ("suites", "expected"),
    [
        ((Suite.HPKE_MLKEM768_X25519,), Suite.HPKE_MLKEM768_X25519),  # the default profile
        ((Suite.HPKE_X25519, Suite.HPKE_MLKEM768_X25519), Suite.HPKE_X25519),  # a compatibility profile's order
    ],
)
def test_the_gateway_seals_plain_prompts_in_the_first_configured_suite(
    suites: tuple[Suite, ...], expected: Suite
) -> None:
    """Workers offering a classical key beside the hybrid: the plain-prompt path follows sealing.suites, and a
    key of a suite the profile does not list is never sealed to."""
    keys = WorkerKeys.generate((Suite.HPKE_X25519, Suite.HPKE_MLKEM768_X25519))
    worker = EnclaveWorker("w0", "us-west-1", ScriptedEngine(), 8, keys=keys)
    asyncio.run(worker.start())
    pool = FakePool([worker])
    settings = AppSettings(regions=(RegionSettings(name="us-west-1"),), sealing=SealingSettings(suites=suites))
    app = create_app()
    app.state.service = GatewayService(
        settings, LocalBackend(InferenceDispatcher({"us-west-1": pool})), dev_tenancy(settings), Recorder()
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    response = call(client, "POST", "/infer", json=PLAIN, headers={"Accept": "text/event-stream"})
    assert response.status_code == 200 and "Hello" in response.text
    assert [dict(header.wraps) for header in pool.headers] == [{keys.public_key(expected).key_id: expected}]
