"""Key rotation: a replaced worker has new keys; the client's cached key set goes stale, the service says 409
stale_keys, and the client re-attests, reseals under a new request id and retries once."""

from __future__ import annotations

import json

import httpx
import pytest

from securechat.client import SecureChatClient, ServiceError
from securechat.envelope import Envelope, seal_request
from securechat.request_body import RequestBody
from securechat.suites import DEFAULT_SUITES
from tests.client_harness import REGION, TENANT, LocalService, TrustFiles, make_worker, serve_gateway


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


def _replace_all(service: LocalService, trust: TrustFiles, generation: int) -> None:
    for index in range(len(service.pool.workers)):
        service.replace_worker(index, make_worker(f"w{index}-gen{generation}", trust.root))


def test_client_reattests_after_stale_keys_and_succeeds(trust: TrustFiles) -> None:
    request_ids: list[str] = []

    def record_request_id(request: httpx.Request) -> None:
        if request.url.path == "/infer":
            request_ids.append(Envelope.from_dict(json.loads(request.read())["envelope"]).header.request_id)

    hooks = {"request": [record_request_id]}
    with serve_gateway([make_worker("w0", trust.root), make_worker("w1", trust.root)]) as service:
        client = SecureChatClient(trust.client_config(service.url), httpx.Client(event_hooks=hooks))
        old = client.attest()
        assert client.chat("Hi") == "Hello, world"
        _replace_all(service, trust, 1)
        assert client.chat("Hi") == "Hello, world"  # 409 stale_keys, re-attest, reseal, retry
        new = client.attest()
        # The old keys are refused outright: an envelope sealed for them has no live worker.
        sealed = seal_request(
            RequestBody.from_prompt("Hi").to_bytes(),
            request_id="old-keys-1",
            tenant_id=TENANT,
            mode="plain",
            region=REGION,
            recipients=old.recipient_keys(DEFAULT_SUITES),
        )
        payload = {"tenant_id": TENANT, "mode": "plain", "region": REGION, "envelope": sealed.envelope.to_dict()}
        refused = httpx.post(f"{service.url}/infer", json=payload)
    assert refused.status_code == 409 and refused.json()["error"] == "stale_keys"
    assert {k.key_id for k in old.recipient_keys(DEFAULT_SUITES)}.isdisjoint(
        k.key_id for k in new.recipient_keys(DEFAULT_SUITES)
    )
    assert sorted(w.worker_id for w in new.verified) == ["w0-gen1", "w1-gen1"]
    assert service.paths["/infer"] == 1 + 2 + 1 and service.paths["/v1/attestation"] == 3
    assert len(set(request_ids)) == len(request_ids) == 3  # the retry was resealed under a new request id


def test_client_retries_only_once(trust: TrustFiles) -> None:
    with serve_gateway([make_worker("w0", trust.root)]) as service:
        generation = iter(range(1, 10))

        def rotate_before_infer(request: httpx.Request) -> None:
            if request.url.path == "/infer":
                _replace_all(service, trust, next(generation))  # every key set the client sees is already stale

        client = SecureChatClient(
            trust.client_config(service.url), httpx.Client(event_hooks={"request": [rotate_before_infer]})
        )
        with pytest.raises(ServiceError) as caught:
            client.chat("Hi")
    assert (caught.value.status, caught.value.code) == (409, "stale_keys")
    assert service.paths["/infer"] == 2 and service.paths["/v1/attestation"] == 2
