"""Verify before you send: every refusal carries its own reason, checks run in order, and only verified keys
are handed to a sealer."""

from __future__ import annotations

import copy
import hashlib
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import (
    AttestationError,
    AttestationFailure,
    AttestationVerifier,
    Attester,
    PlatformPolicy,
    ReleaseManifest,
    SignedManifest,
    SnpPolicy,
    VerifiedWorker,
    issue_document,
    new_nonce,
    sign_manifest,
)
from securechat.attestation.simulated import SimulatedSource
from securechat.keys import RecipientKey, Suite, WorkerKeys
from securechat.worker import WorkerIdentity

NOW = 1_700_000_000
NONCE = new_nonce()
ROOT = ed25519.Ed25519PrivateKey.generate()
RELEASE = ed25519.Ed25519PrivateKey.generate()
REGISTERS = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("code", "config", "model")}
HYBRID, X25519, RSA = Suite.HPKE_MLKEM768_X25519, Suite.HPKE_X25519, Suite.RSA_OAEP
KEYS_A = WorkerKeys.generate()
KEYS_B = WorkerKeys.generate()
WORKER_A = WorkerIdentity("worker-a", "us-west-1", KEYS_A.public_keys)
WORKER_B = WorkerIdentity("worker-b", "us-west-1", KEYS_B.public_keys)
MANIFEST = sign_manifest(ReleaseManifest("securechat", "v1", {k: {v} for k, v in REGISTERS.items()}, NOW), RELEASE)


def _verifier(
    manifest: SignedManifest = MANIFEST, clock_s: float = NOW + 1, root: ed25519.Ed25519PrivateKey = ROOT
) -> AttestationVerifier:
    return AttestationVerifier(root.public_key(), manifest, RELEASE.public_key(), max_age_s=60, clock=lambda: clock_s)


def _document(identity: WorkerIdentity = WORKER_A, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"registers": REGISTERS, "nonce": NONCE, "now": NOW, "key_ttl_s": 3600} | kwargs
    root = options.pop("root", ROOT)
    return issue_document(root, identity, options.pop("registers"), options.pop("nonce"), **options).to_dict()


def _refusal(
    document: dict[str, Any], verifier: AttestationVerifier | None = None, nonce: str = NONCE
) -> AttestationError:
    with pytest.raises(AttestationError) as info:
        (verifier or _verifier()).verify(document, nonce)
    return info.value


def test_valid_document_yields_its_keys() -> None:
    worker = _verifier().verify(_document(), NONCE)
    assert isinstance(worker, VerifiedWorker)
    assert worker.worker_id == "worker-a"
    assert worker.keys == KEYS_A.public_keys
    assert worker.expires_at == NOW + 3600
    assert worker.key_for([HYBRID]) == KEYS_A.public_key(HYBRID)
    assert worker.key_for([RSA]) is None


def _manifest_allowing(*suites: Suite) -> SignedManifest:
    return sign_manifest(ReleaseManifest("securechat", "v1", MANIFEST.manifest.registers, NOW, suites), RELEASE)


def test_every_suite_verifies_where_the_manifest_allows_it() -> None:
    keys = WorkerKeys.generate((X25519, RSA, HYBRID))
    document = _document(WorkerIdentity("worker-c", "eu-1", keys.public_keys))
    worker = _verifier(_manifest_allowing(HYBRID, X25519, RSA)).verify(document, NONCE)
    assert {key.suite for key in worker.keys} == {HYBRID, X25519, RSA}
    assert worker.key_for([X25519, HYBRID]) == keys.public_key(X25519)  # the caller's order decides
    # The default manifest allows the hybrid only: classical keys are dropped, never handed out for sealing.
    assert _verifier().verify(document, NONCE).keys == (keys.public_key(HYBRID),)


def test_a_worker_offering_only_classical_keys_is_refused_by_a_hybrid_manifest() -> None:
    """The downgrade: the host shows a worker with an X25519 key alone, to record what is sealed to it."""
    classical = WorkerIdentity("worker-c", "us-west-1", WorkerKeys.generate((X25519,)).public_keys)
    assert _refusal(_document(classical)).reason is AttestationFailure.NO_ALLOWED_SUITE
    assert _verifier(_manifest_allowing(X25519)).verify(_document(classical), NONCE).worker_id == "worker-c"


def test_malformed_document() -> None:
    document = _document()
    del document["evidence"]["debug"]
    assert _refusal(document).reason is AttestationFailure.MALFORMED
    assert _refusal({"anything": 1}).reason is AttestationFailure.MALFORMED


def test_wrong_root() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    assert _refusal(_document(root=other)).reason is AttestationFailure.WRONG_ROOT


def test_certificate_claiming_the_pinned_root_but_signed_by_another_is_a_bad_signature() -> None:
    document = _document(root=ed25519.Ed25519PrivateKey.generate())
    document["evidence"]["certificate"]["issuer"] = _document()["evidence"]["certificate"]["issuer"]
    assert _refusal(document).reason is AttestationFailure.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("registers", {**REGISTERS, "code": "0" * 64}),
        ("key_expiry", NOW + 10**6),
        ("timestamp", NOW + 1),
        ("public_keys", [key.to_dict() for key in KEYS_B.public_keys]),  # keys swapped after the report
    ],
)
def test_any_tampered_field_is_not_what_the_evidence_vouches_for(field: str, value: Any) -> None:
    document = _document()
    document[field] = value
    assert _refusal(document).reason is AttestationFailure.REPORT_DATA_MISMATCH


def test_a_tampered_nonce_or_worker_id_is_refused_by_name() -> None:
    document = _document()
    document["nonce"] = "ab" * 32  # the verifier's own nonce check comes first
    assert _refusal(document, nonce="ab" * 32).reason is AttestationFailure.REPORT_DATA_MISMATCH
    document = _document()
    document["worker_id"] = "worker-b"  # the simulated certificate names the worker its key speaks for
    assert _refusal(document).reason is AttestationFailure.CERTIFICATE_SUBJECT


def test_tampered_evidence() -> None:
    document = _document()
    document["evidence"]["certificate"]["not_after"] += 10**6
    assert _refusal(document).reason is AttestationFailure.BAD_SIGNATURE
    document = _document()
    document["evidence"]["signature"] = _document()["evidence"]["signature"]  # valid, from another key
    assert _refusal(document).reason is AttestationFailure.BAD_SIGNATURE
    document = _document()
    document["evidence"]["debug"] = True  # a debug worker claiming otherwise, or the reverse
    assert _refusal(document).reason is AttestationFailure.BAD_SIGNATURE


def test_attestation_key_used_for_another_worker() -> None:
    """A real attestation key endorsed for worker-a speaks for worker-b: its evidence verifies, the subject not."""
    source = SimulatedSource(ROOT, "worker-a", cert_ttl_s=3600, now=NOW)
    forged = Attester(source, WORKER_B, REGISTERS, key_ttl_s=3600, now=NOW).attest(NONCE, now=NOW)
    assert _refusal(forged.to_dict()).reason is AttestationFailure.CERTIFICATE_SUBJECT


def test_a_manifest_that_requires_hardware_refuses_a_simulated_document() -> None:
    """The host cannot talk a client into the simulated platform: it is not in the manifest."""
    snp_only = PlatformPolicy(sev_snp=SnpPolicy(frozenset({"ab" * 48})))
    manifest = sign_manifest(
        ReleaseManifest("securechat", "v1", MANIFEST.manifest.registers, NOW, platforms=snp_only), RELEASE
    )
    assert _refusal(_document(), _verifier(manifest)).reason is AttestationFailure.PLATFORM_NOT_ALLOWED
    # Nor by a client that pins no simulated root at all: the platform has no verifier there.
    bare = AttestationVerifier(None, MANIFEST, RELEASE.public_key(), max_age_s=60, clock=lambda: NOW + 1)
    assert _refusal(_document(), bare).reason is AttestationFailure.WRONG_ROOT


def test_certificate_outside_its_validity() -> None:
    attester = Attester.simulated(ROOT, WORKER_A, REGISTERS, key_ttl_s=60, now=NOW)
    late = attester.attest(NONCE, now=NOW + 100).to_dict()
    assert _refusal(late, _verifier(clock_s=NOW + 100)).reason is AttestationFailure.CERTIFICATE_EXPIRED


def test_replayed_or_mismatched_nonce() -> None:
    answered = _document()
    assert _refusal(answered, nonce=new_nonce()).reason is AttestationFailure.NONCE_MISMATCH


def test_stale_document() -> None:
    assert _refusal(_document(), _verifier(clock_s=NOW + 61)).reason is AttestationFailure.STALE
    _verifier(clock_s=NOW + 60).verify(_document(), NONCE)  # exactly max_age_s old is still fresh


def test_document_from_the_future() -> None:
    attester = Attester.simulated(ROOT, WORKER_A, REGISTERS, key_ttl_s=3600, now=NOW)
    ahead = attester.attest(NONCE, now=NOW + 10).to_dict()
    assert _refusal(ahead, _verifier(clock_s=NOW)).reason is AttestationFailure.FROM_FUTURE
    _verifier(clock_s=NOW).verify(attester.attest(NONCE, now=NOW + 5).to_dict(), NONCE)  # within the skew


def test_tampered_manifest() -> None:
    widened = ReleaseManifest("securechat", "v1", {**MANIFEST.manifest.registers, "code": {"0" * 64}}, NOW)
    tampered = SignedManifest(widened, MANIFEST.signature)
    assert _refusal(_document(), _verifier(manifest=tampered)).reason is AttestationFailure.MANIFEST_SIGNATURE
    foreign = sign_manifest(MANIFEST.manifest, ed25519.Ed25519PrivateKey.generate())
    assert _refusal(_document(), _verifier(manifest=foreign)).reason is AttestationFailure.MANIFEST_SIGNATURE


@pytest.mark.parametrize("register", ["code", "config", "model"])
def test_register_not_in_the_manifest(register: str) -> None:
    error = _refusal(_document(registers={**REGISTERS, register: "f" * 64}))
    assert error.reason is AttestationFailure.REGISTER_NOT_ALLOWED
    assert error.register == register
    assert str(error) == f"attestation refused: register_not_allowed:{register}"


def test_missing_or_unknown_register() -> None:
    missing = _refusal(_document(registers={k: v for k, v in REGISTERS.items() if k != "model"}))
    assert (missing.reason, missing.register) == (AttestationFailure.REGISTER_NOT_ALLOWED, "model")
    extra = _refusal(_document(registers={**REGISTERS, "debug_shell": "0" * 64}))
    assert (extra.reason, extra.register) == (AttestationFailure.REGISTER_NOT_ALLOWED, "debug_shell")


def test_debug_enabled() -> None:
    assert _refusal(_document(debug=True)).reason is AttestationFailure.DEBUG_ENABLED


def test_key_expired() -> None:
    attester = Attester.simulated(ROOT, WORKER_A, REGISTERS, key_ttl_s=60, cert_ttl_s=3600, now=NOW)
    document = attester.attest(NONCE, now=NOW + 61).to_dict()
    assert _refusal(document, _verifier(clock_s=NOW + 62)).reason is AttestationFailure.KEY_EXPIRED


def test_worker_a_document_carrying_worker_b_key_under_a_key_id() -> None:
    a_key, b_key = KEYS_A.public_key(HYBRID), KEYS_B.public_key(HYBRID)
    substituted = RecipientKey(HYBRID, a_key.key_id, b_key.public_key_bytes)
    identity = WorkerIdentity("worker-a", "us-west-1", (substituted,))
    assert _refusal(_document(identity)).reason is AttestationFailure.KEY_ID_MISMATCH


@pytest.mark.parametrize(("claimed", "real"), [(RSA, X25519), (HYBRID, X25519), (X25519, HYBRID)])
def test_key_that_does_not_fit_its_suite(claimed: Suite, real: Suite) -> None:
    real_key = WorkerKeys.generate((real,)).public_key(real)
    wrong_suite = RecipientKey.from_public_bytes(claimed, real_key.public_key_bytes)
    identity = WorkerIdentity("worker-a", "us-west-1", (wrong_suite,))
    assert _refusal(_document(identity)).reason is AttestationFailure.KEY_INVALID


@pytest.mark.parametrize(
    ("kwargs", "clock_s", "nonce", "expected"),
    [
        ({"debug": True}, NOW + 61, NONCE, AttestationFailure.STALE),  # freshness before debug
        ({"registers": {**REGISTERS, "code": "f" * 64}}, NOW + 1, "ab" * 32, AttestationFailure.NONCE_MISMATCH),
        (
            {"debug": True, "registers": {**REGISTERS, "model": "f" * 64}},
            NOW + 1,
            NONCE,
            AttestationFailure.REGISTER_NOT_ALLOWED,
        ),
        ({"root": ed25519.Ed25519PrivateKey.generate()}, NOW + 61, "ab" * 32, AttestationFailure.WRONG_ROOT),
    ],
)
def test_checks_run_in_order(kwargs: dict[str, Any], clock_s: float, nonce: str, expected: AttestationFailure) -> None:
    assert _refusal(_document(**kwargs), _verifier(clock_s=clock_s), nonce=nonce).reason is expected


def test_manifest_signature_is_checked_before_registers() -> None:
    tampered = SignedManifest(MANIFEST.manifest, b"\x00" * 64)
    document = _document(registers={**REGISTERS, "code": "f" * 64}, debug=True)
    assert _refusal(document, _verifier(manifest=tampered)).reason is AttestationFailure.MANIFEST_SIGNATURE


def test_verify_all_keeps_verified_and_refused_apart() -> None:
    good_a = _document()
    bad = _document(WORKER_B, debug=True)
    junk: dict[str, Any] = {"worker_id": "x"}
    report = _verifier().verify_all([good_a, bad, junk], NONCE)
    assert [worker.worker_id for worker in report.verified] == ["worker-a"]
    assert [(r.index, r.reason, r.claimed_worker_id) for r in report.refused] == [
        (1, AttestationFailure.DEBUG_ENABLED, "worker-b"),
        (2, AttestationFailure.MALFORMED, None),
    ]
    assert report.recipient_keys([HYBRID]) == list(KEYS_A.public_keys)
    assert report.recipient_keys([RSA]) == []


def test_verify_all_with_nothing_verified_gives_no_keys() -> None:
    report = _verifier().verify_all([_document(debug=True)], NONCE)
    assert report.verified == () and report.recipient_keys([HYBRID]) == []


def test_verify_does_not_mutate_its_input() -> None:
    document = _document()
    before = copy.deepcopy(document)
    _verifier().verify(document, NONCE)
    assert document == before


def test_bad_expected_nonce_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        _verifier().verify(_document(), "")


def test_refusals_are_logged_without_content(caplog: pytest.LogCaptureFixture) -> None:
    document = _document(registers={**REGISTERS, "config": "f" * 64})
    with caplog.at_level(logging.WARNING, logger="securechat.attestation"):
        _refusal(document)
    assert caplog.messages == ["attestation_refused reason=register_not_allowed:config worker_id=worker-a"]


def test_every_refusal_reason_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "attestation.md").read_text()
    assert [r.value for r in AttestationFailure if f"`{r.value}" not in docs] == []
