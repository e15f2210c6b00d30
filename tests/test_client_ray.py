"""The client side against the running app: attestation-verified SDK, the OpenAI package through the local
proxy, and a canary proving the host side never handles the prompt or the answer in the clear."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from deployments.local import LocalApp
from securechat.attestation import (
    Platform,
    create_root,
    load_manifest,
    load_release_key,
    new_nonce,
)
from securechat.attestation.sev_snp.emulator import emulated_launch_measurement
from securechat.client import AttestationFailed, ClientConfig, ReleaseNotLogged, SecureChatClient
from securechat.envelope import Envelope
from securechat.keys import Suite
from securechat.proxy.app import create_proxy_app
from securechat.transparency import DEFAULT_ORIGIN, NoteSigner, ReleaseLog, SignatureType, SqliteLogStore
from tests.client_harness import RecordingTransport, serve_asgi
from tests.ray_harness import APP_ARGS, MAIN_REGION, emulator_ark_path, pinned_client_config, platform_root_path

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def client_config(
    ray_app: LocalApp, securechat_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ClientConfig:
    """What a user pins: the cluster's platform root, a release key, and a manifest for what the workers run."""
    return pinned_client_config(
        tmp_path_factory.mktemp("trust"),
        args=APP_ARGS,
        region=MAIN_REGION,
        release="ray-test",
        base_url=ray_app.base_url,
        root_public_key_path=Path(f"{platform_root_path(securechat_cache_dir)}.pub"),
        snp_ark_path=emulator_ark_path(securechat_cache_dir),
    )


def test_sdk_verifies_every_worker_and_reads_its_answer(client_config: ClientConfig) -> None:
    with SecureChatClient(client_config) as client:
        report = client.attest()
        assert len(report.verified) == 2 and not report.refused
        completion = client.complete("Tell me a story.", max_new_tokens=10, temperature=0.8, seed=3)
    assert completion.metrics["output_tokens"] == 10
    assert completion.metrics["worker_id"] in {w.worker_id for w in report.verified}


def test_the_app_offers_only_post_quantum_keys(ray_app: LocalApp, client_config: ClientConfig) -> None:
    """The default sealing profile: /v1/keys and every attestation document carry the hybrid key alone, and
    what the SDK sends names only hybrid wraps."""
    hybrid = Suite.HPKE_MLKEM768_X25519.value
    for region in (r["name"] for r in APP_ARGS["regions"]):
        workers = httpx.get(f"{ray_app.base_url}/v1/keys", params={"region": region}, timeout=10).json()["workers"]
        assert workers and {key["suite"] for worker in workers for key in worker["keys"]} == {hybrid}
    nonce = new_nonce()
    answer = httpx.get(f"{ray_app.base_url}/v1/attestation", params={"region": MAIN_REGION, "nonce": nonce}, timeout=30)
    documents = answer.json()["documents"]
    assert len(documents) == 2
    assert {key["suite"] for document in documents for key in document["public_keys"]} == {hybrid}
    recording = RecordingTransport()
    with SecureChatClient(client_config, httpx.Client(transport=recording, timeout=60)) as client:
        assert client.complete("Hi", max_new_tokens=4).metrics["output_tokens"] == 4
    sent = json.loads(recording.sent[recording.sent.index(b'{"tenant_id"') :])
    assert set(dict(Envelope.from_dict(sent["envelope"]).header.wraps).values()) == {Suite.HPKE_MLKEM768_X25519}


def test_workers_attest_on_the_emulated_snp_platform_through_the_production_verifier(
    ray_app: LocalApp, client_config: ClientConfig, securechat_cache_dir: Path, tmp_path: Path
) -> None:
    """The Ray app runs on the emulated SEV-SNP platform: byte-exact reports, checked by the same verifier as
    real ones, only the pinned ARK differs. Without that ARK, or with a manifest for another platform, refused."""
    workers = httpx.get(f"{ray_app.base_url}/v1/workers", timeout=10).json()["regions"][MAIN_REGION]
    assert {worker["platform"] for worker in workers} == {"emulated-sev-snp"}
    with SecureChatClient(client_config) as client:
        report = client.attest()
    code = load_manifest(client_config.manifest_path).manifest.registers["code"]
    assert len(report.verified) == 2 and not report.refused
    for worker in report.verified:
        assert worker.claims is not None and worker.claims.platform is Platform.SEV_SNP
        assert worker.claims.product == "Genoa" and worker.claims.signer == "vcek"
        assert worker.claims.measurements["measurement"] == emulated_launch_measurement(next(iter(code)))
    amd_only = replace(client_config, snp_ark_paths=())
    with pytest.raises(AttestationFailed) as unpinned:
        SecureChatClient(amd_only).attest()
    assert set(unpinned.value.reasons) == {"wrong_root"}
    create_root(tmp_path / "root.pem")
    simulated_only = pinned_client_config(
        tmp_path,
        args={**APP_ARGS, "attestation": {"platform": "simulated"}},
        region=MAIN_REGION,
        release="simulated-only",
        base_url=ray_app.base_url,
        root_public_key_path=tmp_path / "root.pem.pub",
    )
    with pytest.raises(AttestationFailed) as other_platform:
        SecureChatClient(simulated_only).attest()
    assert set(other_platform.value.reasons) == {"platform_not_allowed"}


@pytest.fixture
def proxy_url(client_config: ClientConfig) -> Iterator[str]:
    with serve_asgi(create_proxy_app(lambda: SecureChatClient(client_config)), lifespan="on") as url:
        yield url


def test_openai_package_through_the_proxy(proxy_url: str, client_config: ClientConfig) -> None:
    api = openai.OpenAI(base_url=f"{proxy_url}/v1", api_key="unused", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Say something."}]
    plain = api.chat.completions.create(model="securechat", messages=messages, max_tokens=8, temperature=0.7, seed=9)
    chunks = api.chat.completions.create(
        model="securechat", messages=messages, max_tokens=8, temperature=0.7, seed=9, stream=True
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    with SecureChatClient(client_config) as client:
        direct = client.chat(messages, max_new_tokens=8, temperature=0.7, seed=9)
    assert plain.choices[0].message.content == streamed == direct
    assert plain.usage is not None and plain.usage.completion_tokens == 8


def test_host_side_never_handles_the_prompt_or_answer_in_the_clear(
    ray_app: LocalApp, client_config: ClientConfig
) -> None:
    canary = f"CANARY{uuid.uuid4().hex}"
    recording = RecordingTransport()
    with SecureChatClient(client_config, http=httpx.Client(transport=recording, timeout=60)) as client:
        answer = client.chat(f"Repeat after me: {canary}", max_new_tokens=16, temperature=0.9, seed=4)
    assert answer and canary.encode() not in recording.sent and canary.encode() not in recording.received
    assert answer.encode() not in recording.received  # the answer only ever crossed the host as ciphertext
    hits = [str(p) for p in ray_app.session_dir.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert hits == []


def test_a_client_pinning_the_release_log_checks_it_through_serve(
    client_config: ClientConfig, securechat_cache_dir: Path, tmp_path: Path
) -> None:
    """The gateway replica serves the log named in the app's config; the SDK seals only after checking it."""
    signer = NoteSigner(DEFAULT_ORIGIN, SignatureType.ED25519, ed25519.Ed25519PrivateKey.generate())
    (tmp_path / "log.vkey").write_text(signer.verifier.to_vkey())
    pinned = replace(client_config, log_vkey_path=tmp_path / "log.vkey", log_state_path=tmp_path / "seen.json")
    log_db = securechat_cache_dir / "transparency-log.sqlite3"
    with SecureChatClient(pinned) as client, pytest.raises(ReleaseNotLogged) as refused:
        client.complete("Hi", max_new_tokens=2)
    assert (refused.value.reason, refused.value.code) == ("log_unavailable", "no_transparency_log")
    with ReleaseLog(SqliteLogStore.create(log_db, DEFAULT_ORIGIN)) as log:
        release_key = load_release_key(client_config.release_public_key_path.with_suffix(""))
        log.append(load_manifest(client_config.manifest_path), [release_key.public_key()])
        log.sign_checkpoint(signer)
    with SecureChatClient(pinned) as client:
        assert client.complete("Hi", max_new_tokens=2).metrics["output_tokens"] == 2
        assert client.release is not None and client.release.leaf_index == 0
