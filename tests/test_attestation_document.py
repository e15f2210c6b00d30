"""Attestation documents and release manifests: round trips, exact signed bytes, strict parsing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation import (
    AttestationDocument,
    AttestationKeyCertificate,
    Attester,
    Platform,
    ReleaseManifest,
    SignedManifest,
    build_manifest,
    issue_document,
    load_manifest,
    runtime_config,
    save_manifest,
    sign_manifest,
)
from securechat.attestation._canonical import canonical_json
from securechat.config import SealingSettings, StreamSettings
from securechat.keys import WorkerKeys
from securechat.suites import DEFAULT_SUITES
from securechat.worker import WorkerIdentity

NOW = 1_700_000_000
NONCE = "c0ffee" * 8
REGISTERS = {"code": "1" * 64, "config": "2" * 64, "model": "3" * 64}
ROOT = ed25519.Ed25519PrivateKey.generate()
IDENTITY = WorkerIdentity("worker-1", "us-west-1", WorkerKeys.generate().public_keys)
CANARY = "PROMPT-CANARY-do-not-log"


def _document(**overrides: Any) -> dict[str, Any]:
    data = issue_document(ROOT, IDENTITY, REGISTERS, NONCE, now=NOW, key_ttl_s=600).to_dict()
    return {**data, **overrides}


def test_round_trip_through_json() -> None:
    document = issue_document(ROOT, IDENTITY, REGISTERS, NONCE, now=NOW, key_ttl_s=600)
    parsed = AttestationDocument.from_dict(json.loads(json.dumps(document.to_dict())))
    assert parsed == document
    assert parsed.to_dict() == document.to_dict()
    assert parsed.public_keys == IDENTITY.public_keys and parsed.platform is Platform.SIMULATED
    assert parsed.key_expiry == NOW + 600 and parsed.timestamp == NOW


def test_the_evidence_signs_exactly_the_documents_report_data() -> None:
    """binding.py: SHA-512 over the tag, the nonce, the keys statement and the registers, nothing else."""
    document = issue_document(ROOT, IDENTITY, REGISTERS, NONCE, now=NOW, key_ttl_s=600)
    statement = {
        "worker_id": IDENTITY.worker_id,
        "key_expiry": NOW + 600,
        "timestamp": NOW,
        "public_keys": [key.to_dict() for key in IDENTITY.public_keys],
    }
    expected = hashlib.sha512(
        b"securechat/report-data/v1\x00"
        + len(NONCE).to_bytes(2, "big")
        + NONCE.encode()
        + hashlib.sha256(canonical_json(statement)).digest()
        + hashlib.sha256(canonical_json(REGISTERS)).digest()
    ).digest()
    assert document.report_data() == expected
    assert base64.b64decode(document.evidence["report_data"]) == expected
    certificate = AttestationKeyCertificate.from_dict(document.evidence["certificate"])
    body = {key: value for key, value in document.evidence.items() if key != "signature"}
    signed = b"securechat-simulated-evidence-v1\x00" + canonical_json(body)
    certificate.attestation_key().verify(base64.b64decode(document.evidence["signature"]), signed)  # raises if not
    assert certificate.verify_issued_by(ROOT.public_key()) and certificate.subject == IDENTITY.worker_id


def test_any_field_changes_the_report_data() -> None:
    document = issue_document(ROOT, IDENTITY, REGISTERS, NONCE, now=NOW, key_ttl_s=600)
    other_keys = WorkerKeys.generate().public_keys
    for change in (
        {"worker_id": "worker-2"},
        {"key_expiry": NOW + 601},
        {"timestamp": NOW + 1},
        {"nonce": "ab" * 16},
        {"registers": {**REGISTERS, "model": "4" * 64}},
        {"public_keys": other_keys},
    ):
        assert dataclasses.replace(document, **change).report_data() != document.report_data(), change


def test_field_order_on_the_wire_does_not_matter() -> None:
    data = _document()
    shuffled = dict(reversed(list(data.items())))
    assert AttestationDocument.from_dict(shuffled).report_data() == AttestationDocument.from_dict(data).report_data()


def test_documents_from_one_attester_share_key_expiry_and_certificate() -> None:
    attester = Attester.simulated(ROOT, IDENTITY, REGISTERS, key_ttl_s=600, now=NOW)
    first, later = attester.attest(NONCE, now=NOW), attester.attest("ab" * 16, now=NOW + 300)
    assert first.key_expiry == later.key_expiry == NOW + 600  # re-attesting never extends the keys
    assert first.evidence["certificate"] == later.evidence["certificate"]
    assert later.timestamp == NOW + 300


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("nonce"),
        lambda d: d.update(extra=1),
        lambda d: d.update(version=1),
        lambda d: d.update(platform=CANARY),
        lambda d: d.update(timestamp=True),
        lambda d: d.update(timestamp=1.5),
        lambda d: d.update(timestamp=-1),
        lambda d: d.update(nonce="ab"),
        lambda d: d.update(nonce="AB" * 16),
        lambda d: d.update(worker_id=CANARY + " with spaces"),
        lambda d: d.update(registers={}),
        lambda d: d.update(registers={CANARY: "1" * 64}),
        lambda d: d.update(registers={"code": CANARY}),
        lambda d: d.update(public_keys=[]),
        lambda d: d.update(public_keys=[{"suite": CANARY, "key_id": "0" * 32, "public_key": ""}]),
        lambda d: d.update(public_keys=d["public_keys"] * 2),
        lambda d: d.update(evidence=None),
        lambda d: d.update(evidence={"padding": "x" * (300 << 10)}),
    ],
)
def test_strict_parse_refuses_with_content_free_messages(mutate: Any) -> None:
    data = _document()
    mutate(data)
    with pytest.raises(ValueError) as info:
        AttestationDocument.from_dict(data)
    assert CANARY not in str(info.value)


def test_parse_refuses_non_mappings() -> None:
    values: list[object] = [None, [], "doc", 3]
    for value in values:
        with pytest.raises(ValueError):
            AttestationDocument.from_dict(value)


def test_attester_refuses_bad_inputs() -> None:
    attester = Attester.simulated(ROOT, IDENTITY, REGISTERS, key_ttl_s=600, now=NOW)
    with pytest.raises(ValueError):
        attester.attest("not-hex", now=NOW)
    with pytest.raises(ValueError):
        Attester.simulated(ROOT, IDENTITY, {"Code!": "1" * 64}, key_ttl_s=600, now=NOW)
    with pytest.raises(ValueError):
        Attester.simulated(ROOT, IDENTITY, REGISTERS, key_ttl_s=600, cert_ttl_s=60, now=NOW)
    with pytest.raises(ValueError):
        Attester.simulated(ROOT, WorkerIdentity("worker-1", "us-west-1", ()), REGISTERS, key_ttl_s=600, now=NOW)


# -- release manifests ---------------------------------------------------------------------------------------
RELEASE = ed25519.Ed25519PrivateKey.generate()


def _manifest() -> ReleaseManifest:
    return ReleaseManifest("securechat", "v1", {name: {value} for name, value in REGISTERS.items()}, NOW)


def test_manifest_round_trip_and_signature(tmp_path: Path) -> None:
    signed = sign_manifest(_manifest(), RELEASE)
    assert signed.verify(RELEASE.public_key())
    assert not signed.verify(ed25519.Ed25519PrivateKey.generate().public_key())
    save_manifest(tmp_path / "manifest.json", signed)
    loaded = load_manifest(tmp_path / "manifest.json")
    assert loaded == signed and loaded.verify(RELEASE.public_key())
    assert (tmp_path / "manifest.json").read_bytes() == canonical_json(signed.to_dict()) + b"\n"


def test_manifest_allows_only_listed_values_and_union_keeps_both() -> None:
    manifest = _manifest()
    assert manifest.allows("code", "1" * 64)
    assert not manifest.allows("code", "4" * 64) and not manifest.allows("other", "1" * 64)
    newer = ReleaseManifest("securechat", "v2", {**{n: {v} for n, v in REGISTERS.items()}, "code": {"4" * 64}}, NOW)
    both = newer.union(manifest, release="v1-to-v2", now=NOW)
    assert both.registers["code"] == {"1" * 64, "4" * 64} and both.registers["model"] == {"3" * 64}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(registers={"code": ["2" * 64, "1" * 64]}),  # unsorted: not the canonical form
        lambda m: m.update(registers={"code": ["1" * 64, "1" * 64]}),
        lambda m: m.update(registers={"code": []}),
        lambda m: m.update(registers={"code": [CANARY]}),
        lambda m: m.update(name=CANARY + " x"),
        lambda m: m.update(version=9),
        lambda m: m.pop("created_at"),
    ],
)
def test_manifest_strict_parse(mutate: Any) -> None:
    data = sign_manifest(_manifest(), RELEASE).to_dict()
    mutate(data["manifest"])
    with pytest.raises(ValueError) as info:
        SignedManifest.from_dict(data)
    assert CANARY not in str(info.value)


def test_build_manifest_accepts_exactly_the_current_measurements(tmp_path: Path) -> None:
    package, model = tmp_path / "pkg", tmp_path / "model"
    package.mkdir()
    model.mkdir()
    (package / "__init__.py").write_text("")
    (model / "config.json").write_text("{}")
    engine = {"kind": "hf", "model": "m", "dtype": "fp32", "quantization": "none", "attn_implementation": "sdpa"}
    config = runtime_config(
        {**engine, "max_input_tokens": 8, "max_new_tokens": 8, "disable_eos": False, "options": {}},
        debug=False,
        stream=StreamSettings().model_dump(mode="json"),
        sealing=SealingSettings().model_dump(mode="json"),
    )
    manifest = build_manifest("securechat", "v1", package_dir=package, config=config, model_dir=model, now=NOW)
    assert set(manifest.registers) == {"code", "config", "model"}
    assert manifest.suites == DEFAULT_SUITES
    assert all(len(values) == 1 for values in manifest.registers.values())
    assert manifest.created_at == NOW


def test_attestation_core_imports_without_ray() -> None:
    import subprocess
    import sys

    # The client side too (SDK, proxy): `pip install securechat` brings neither torch nor xgrammar.
    modules = "securechat.attestation, securechat.client, securechat.proxy"
    code = f"import sys, {modules}; sys.exit(int(bool({{'ray', 'torch', 'xgrammar'}} & set(sys.modules))))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
