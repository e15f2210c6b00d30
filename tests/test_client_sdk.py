"""The SDK against a real gateway (uvicorn, in-process attested workers): verify, seal, stream, decrypt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from securechat.client import AttestationFailed, ConfigError, SecureChatClient, ServiceError
from securechat.envelope import Envelope
from securechat.keys import Suite
from tests.client_harness import REGISTERS, LocalService, TrustFiles, make_worker, serve_gateway


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture
def service(trust: TrustFiles) -> Iterator[LocalService]:
    with serve_gateway([make_worker("w0", trust.root), make_worker("w1", trust.root)]) as running:
        yield running


def test_chat_and_stream_round_trip(service: LocalService, trust: TrustFiles) -> None:
    with SecureChatClient(trust.client_config(service.url)) as client:
        assert list(client.stream("Hi there", max_new_tokens=8)) == ["Hello, world"]  # one flush: the engine is fast
        assert client.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]) == (
            "Hello, world"
        )
        completion = client.complete("Hi", temperature=0.7, top_p=0.9, seed=3)
    assert completion.text == "Hello, world" and completion.metrics["output_tokens"] == 3
    assert service.paths["/v1/attestation"] == 1  # the verified key set is cached between requests
    assert service.paths["/infer"] == 3


def test_attest_reports_verified_workers_with_their_registers(service: LocalService, trust: TrustFiles) -> None:
    with SecureChatClient(trust.client_config(service.url)) as client:
        report = client.attest()
    assert sorted(w.worker_id for w in report.verified) == ["w0", "w1"] and not report.refused
    assert all(dict(w.registers) == REGISTERS for w in report.verified)


def test_api_key_is_sent_as_a_bearer_token(service: LocalService, trust: TrustFiles) -> None:
    seen: list[str | None] = []
    hooks = {"request": [lambda request: seen.append(request.headers.get("authorization"))]}
    with httpx.Client(event_hooks=hooks) as http:
        client = SecureChatClient(trust.client_config(service.url, api_key="sk_test_123"), http)
        assert client.chat("Hi") == "Hello, world"
    assert seen == ["Bearer sk_test_123", "Bearer sk_test_123"]


def test_only_verified_keys_are_sealed_to(trust: TrustFiles) -> None:
    good = make_worker("good", trust.root)
    bad = make_worker("bad", trust.root, {**REGISTERS, "model": "44" * 32})
    sent: list[bytes] = []
    hooks = {"request": [lambda request: sent.append(request.read()) if request.url.path == "/infer" else None]}
    with serve_gateway([good, bad]) as service, httpx.Client(event_hooks=hooks) as http:
        client = SecureChatClient(trust.client_config(service.url), http)
        assert client.chat("Hi") == "Hello, world"
    envelope = Envelope.from_dict(httpx.Response(200, content=sent[0]).json()["envelope"])
    assert set(envelope.header.key_ids) == {k.key_id for k in good.identity.public_keys}


@pytest.mark.parametrize(
    ("case", "reason"),
    [("wrong_root", "wrong_root"), ("register", "register_not_allowed"), ("debug", "debug_enabled")],
)
def test_refusals_propagate_and_nothing_is_sent(case: str, reason: str, trust: TrustFiles, tmp_path: Path) -> None:
    overrides: dict[str, Path] = {}
    if case == "wrong_root":
        workers = [make_worker(f"w{i}", trust.root) for i in range(2)]
        overrides["root_public_key_path"] = TrustFiles.create(tmp_path / "other").root_pub
    elif case == "register":
        workers = [make_worker(f"w{i}", trust.root, {**REGISTERS, "model": "44" * 32}) for i in range(2)]
    else:
        workers = [make_worker(f"w{i}", trust.root, debug=True) for i in range(2)]
    with serve_gateway(workers) as service:
        client = SecureChatClient(trust.client_config(service.url, **overrides))
        with pytest.raises(AttestationFailed) as caught:
            client.chat("Hi")
        with pytest.raises(AttestationFailed):
            list(client.stream("Hi"))
    assert caught.value.reasons == [reason, reason]
    assert f"(w0): {reason}" in str(caught.value) and f"(w1): {reason}" in str(caught.value)
    if case == "register":
        assert "register_not_allowed:model" in str(caught.value)
    assert service.paths["/infer"] == 0 and service.infer_calls == []
    assert service.paths["/v1/attestation"] == 2


def test_a_hybrid_manifest_refuses_a_worker_offering_only_x25519_and_sends_nothing(trust: TrustFiles) -> None:
    """The downgrade a host could try: workers that offer only a classical key, so that what is sealed to them
    can be recorded now and opened later. The pinned manifest requires the hybrid: refused by name, no prompt."""
    classical = [make_worker(f"w{i}", trust.root, suites=(Suite.HPKE_X25519,)) for i in range(2)]
    with serve_gateway(classical) as service:
        client = SecureChatClient(trust.client_config(service.url))
        with pytest.raises(AttestationFailed) as caught:
            client.chat("Hi")
    assert caught.value.reasons == ["no_allowed_suite", "no_allowed_suite"]
    assert service.paths["/infer"] == 0 and service.infer_calls == []


def test_a_client_that_seals_only_with_the_hybrid_refuses_what_a_compatibility_manifest_allows(
    tmp_path: Path,
) -> None:
    """A compatibility manifest allows X25519 too; a client left at the default still seals with the hybrid
    and refuses a classical-only worker, while one configured for X25519 talks to it."""
    compat = TrustFiles.create(tmp_path, suites=(Suite.HPKE_MLKEM768_X25519, Suite.HPKE_X25519))
    both = make_worker("w0", compat.root, suites=(Suite.HPKE_X25519, Suite.HPKE_MLKEM768_X25519))
    classical = make_worker("w1", compat.root, suites=(Suite.HPKE_X25519,))
    sent: list[bytes] = []
    hooks = {"request": [lambda request: sent.append(request.read()) if request.url.path == "/infer" else None]}
    with serve_gateway([both, classical]) as service, httpx.Client(event_hooks=hooks) as http:
        client = SecureChatClient(compat.client_config(service.url), http)
        assert client.chat("Hi") == "Hello, world"
        wraps = dict(Envelope.from_dict(httpx.Response(200, content=sent[-1]).json()["envelope"]).header.wraps)
        assert wraps == {both.identity.public_keys[1].key_id: Suite.HPKE_MLKEM768_X25519}  # w1 left out
        legacy = SecureChatClient(compat.client_config(service.url, suites=(Suite.HPKE_X25519,)), http)
        assert legacy.chat("Hi") == "Hello, world"
        wraps = dict(Envelope.from_dict(httpx.Response(200, content=sent[-1]).json()["envelope"]).header.wraps)
        assert set(wraps.values()) == {Suite.HPKE_X25519} and len(wraps) == 2


def test_no_worker_offering_documents_fails_closed(trust: TrustFiles) -> None:
    with serve_gateway([]) as service:
        client = SecureChatClient(trust.client_config(service.url))
        with pytest.raises(AttestationFailed, match="no attestation document"):
            client.chat("Hi")
    assert service.paths["/infer"] == 0


def test_unknown_region_is_a_service_error(service: LocalService, trust: TrustFiles) -> None:
    client = SecureChatClient(trust.client_config(service.url, region="mars-1"))
    with pytest.raises(ServiceError) as caught:
        client.chat("Hi")
    assert (caught.value.status, caught.value.code) == (400, "unknown_region")


def test_unreachable_service_is_a_service_error(trust: TrustFiles) -> None:
    client = SecureChatClient(trust.client_config("http://127.0.0.1:9"))
    with pytest.raises(ServiceError) as caught:
        client.chat("Hi")
    assert caught.value.status is None and caught.value.code == "connection_failed"


def test_missing_or_unsigned_trust_files_are_config_errors(trust: TrustFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="manifest"):
        SecureChatClient(trust.client_config("http://x", manifest_path=tmp_path / "none.json"))
    other = TrustFiles.create(tmp_path / "other")
    with pytest.raises(ConfigError, match="not signed by the pinned release key"):
        SecureChatClient(trust.client_config("http://x", release_public_key_path=other.release_pub))


def test_api_key_authenticates_the_tenant(trust: TrustFiles, tmp_path: Path) -> None:
    with serve_gateway([make_worker("w0", trust.root)], tenants_dir=tmp_path) as service:
        api_key = service.add_api_key()
        assert SecureChatClient(trust.client_config(service.url, api_key=api_key)).chat("Hi") == "Hello, world"
        with pytest.raises(ServiceError) as caught:
            SecureChatClient(trust.client_config(service.url)).chat("Hi")
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
