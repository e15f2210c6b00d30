"""SEV-SNP evidence: recorded reports of three generations verify against AMD's pinned roots at a pinned time;
each mutation is refused with its own reason; the emulated platform goes through the same verifier.

Vectors: tests/vectors/sev_snp/ (sources and licences in tests/vectors/README.md)."""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

import securechat.attestation.sev_snp
from securechat.attestation import (
    AttestationDocument,
    AttestationError,
    AttestationFailure,
    AttestationVerifier,
    Attester,
    Claims,
    Platform,
    PlatformPolicy,
    ReleaseManifest,
    SnpPolicy,
    new_nonce,
    sign_manifest,
)
from securechat.attestation.offline import verify_evidence
from securechat.attestation.policy import default_snp_floors
from securechat.attestation.sev_snp.abi import parse_certificate_table, parse_report
from securechat.attestation.sev_snp.emulator import TCB, EmulatedTsm, SnpEmulator, emulated_launch_measurement
from securechat.attestation.sev_snp.source import SnpSource
from securechat.attestation.sev_snp.verify import SnpVerifier, pinned_roots
from securechat.keys import WorkerKeys
from securechat.worker import WorkerIdentity

VECTORS = Path(__file__).parent / "vectors" / "sev_snp"
AT = datetime(2026, 11, 1, tzinfo=UTC).timestamp()  # every VCEK here is valid then
VLEK_AT = datetime(2025, 6, 1, tzinfo=UTC).timestamp()  # VLEKs live a year: trustee's was valid then


@dataclass(frozen=True)
class Sample:
    name: str
    product: str
    version: int
    signer: str
    at: float

    @property
    def report(self) -> bytes:
        return (VECTORS / self.name / "report.bin").read_bytes()

    @property
    def certificate(self) -> bytes:
        return next((VECTORS / self.name).glob("v*ek.der")).read_bytes()

    def evidence(self, report: bytes | None = None, certificate: bytes | None = None) -> dict[str, Any]:
        return {
            "report": base64.b64encode(report if report is not None else self.report).decode(),
            "certificate": base64.b64encode(certificate if certificate is not None else self.certificate).decode(),
        }


SAMPLES = [
    Sample("msft-milan", "Milan", 3, "vcek", AT),
    Sample("virtee-milan", "Milan", 2, "vcek", AT),
    Sample("gosev-milan", "Milan", 2, "vcek", AT),
    Sample("msft-genoa", "Genoa", 3, "vcek", AT),
    Sample("msft-turin", "Turin", 5, "vcek", AT),
    Sample("anolis-turin", "Turin", 5, "vcek", AT),
    Sample("trustee-milan-vlek", "Milan", 3, "vlek", VLEK_AT),
]
BY_NAME = {sample.name: sample for sample in SAMPLES}
VERIFIER = SnpVerifier(pinned_roots())
AMD_ROOTS = {  # SHA-256 of each pinned DER (securechat/attestation/sev_snp/trust/README.md)
    "milan_ark": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "milan_ask": "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    "milan_asvk": "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    "genoa_ark": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "genoa_ask": "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    "genoa_asvk": "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    "turin_ark": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    "turin_ask": "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    "turin_asvk": "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
}


def refusal(call: Callable[[], object]) -> AttestationFailure:
    with pytest.raises(AttestationError) as refused:
        call()
    return refused.value.reason


def test_pinned_roots_are_amds() -> None:
    trust = Path(securechat.attestation.sev_snp.__file__).parent / "trust"
    assert {path.stem: hashlib.sha256(path.read_bytes()).hexdigest() for path in trust.glob("*.der")} == AMD_ROOTS


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_recorded_reports_verify_against_amds_roots(sample: Sample) -> None:
    claims = VERIFIER.verify(sample.evidence(), sample.at)
    report = parse_report(sample.report)
    assert (claims.product, claims.signer, report.version) == (sample.product, sample.signer, sample.version)
    assert claims.platform is Platform.SEV_SNP and claims.report_data == report.report_data
    assert claims.measurements == {"measurement": report.measurement.hex()}
    expected_fields = {"fmc", "bootloader", "tee", "snp", "microcode"} if sample.product == "Turin" else None
    assert set(claims.tcb) == (expected_fields or {"bootloader", "tee", "snp", "microcode"})


def test_turin_reads_its_own_tcb_layout() -> None:
    """anolis-turin has every component different: only Turin's byte order gives the VCEK's values."""
    claims = VERIFIER.verify(BY_NAME["anolis-turin"].evidence(), AT)
    assert dict(claims.tcb) == {"fmc": 1, "bootloader": 3, "tee": 2, "snp": 5, "microcode": 97}


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def _with_u64(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<Q", value) + data[offset + 8 :]


MILAN, GENOA, TURIN, VLEK = (BY_NAME[n] for n in ("msft-milan", "msft-genoa", "msft-turin", "trustee-milan-vlek"))


@pytest.mark.parametrize(
    ("mutation", "evidence", "at", "reason"),
    [
        (
            "a flipped signed byte (the measurement)",
            MILAN.evidence(_flip(MILAN.report, 0x90)),
            AT,
            AttestationFailure.BAD_SIGNATURE,
        ),
        (
            "a flipped signed byte (the report data)",
            TURIN.evidence(_flip(TURIN.report, 0x50)),
            AT,
            AttestationFailure.BAD_SIGNATURE,
        ),
        ("a flipped signature byte", GENOA.evidence(_flip(GENOA.report, 0x2A0)), AT, AttestationFailure.BAD_SIGNATURE),
        (
            "a VCEK of another chip",
            MILAN.evidence(certificate=BY_NAME["virtee-milan"].certificate),
            AT,
            AttestationFailure.CHIP_MISMATCH,
        ),
        (
            "a Turin VCEK of another chip",
            TURIN.evidence(certificate=BY_NAME["anolis-turin"].certificate),
            AT,
            AttestationFailure.CHIP_MISMATCH,
        ),
        (
            "REPORTED_TCB not the VCEK's",
            MILAN.evidence(_with_u64(MILAN.report, 0x180, 0x1800000000000004)),
            AT,
            AttestationFailure.TCB_MISMATCH,
        ),
        (
            "a report whose CPUID names another line than its VCEK (Turin's under Genoa's)",
            GENOA.evidence(GENOA.report[:0x188] + bytes([0x1A, 0x02, 0x01]) + GENOA.report[0x18B:]),
            AT,
            AttestationFailure.CHIP_MISMATCH,
        ),
        (
            "a VLEK presented as a VCEK",
            VLEK.evidence(VLEK.report[:0x48] + bytes(4) + VLEK.report[0x4C:]),
            VLEK_AT,
            AttestationFailure.SIGNING_KEY_MISMATCH,
        ),
        (
            "a VCEK presented as a VLEK",
            MILAN.evidence(MILAN.report[:0x48] + struct.pack("<I", 1 << 2) + MILAN.report[0x4C:]),
            AT,
            AttestationFailure.SIGNING_KEY_MISMATCH,
        ),
        ("the VLEK expired (one year)", VLEK.evidence(), AT, AttestationFailure.CERTIFICATE_EXPIRED),
        (
            "the VCEK expired (seven years)",
            MILAN.evidence(),
            datetime(2040, 1, 1, tzinfo=UTC).timestamp(),
            AttestationFailure.CERTIFICATE_EXPIRED,
        ),
        ("a truncated report", MILAN.evidence(MILAN.report[:-1]), AT, AttestationFailure.MALFORMED),
        (
            "a report of version 1",
            MILAN.evidence(struct.pack("<I", 1) + MILAN.report[4:]),
            AT,
            AttestationFailure.MALFORMED,
        ),
        (
            "a certificate that is not one",
            MILAN.evidence(certificate=b"\x30\x03\x02\x01\x00"),
            AT,
            AttestationFailure.MALFORMED,
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_each_mutation_is_refused_with_its_reason(
    mutation: str, evidence: dict[str, Any], at: float, reason: AttestationFailure
) -> None:
    assert refusal(lambda: VERIFIER.verify(evidence, at)) is reason, mutation


# -- the emulated platform, through the same verifier --------------------------------------------------------
@pytest.fixture(scope="module")
def emulator() -> SnpEmulator:
    return SnpEmulator.generate(rsa_bits=2048)


def test_emulated_reports_verify_with_the_emulators_ark_pinned_and_only_then(emulator: SnpEmulator) -> None:
    measurement = emulated_launch_measurement("ab" * 32)
    evidence = SnpSource(EmulatedTsm(emulator, measurement)).evidence(b"\x42" * 64)
    claims = SnpVerifier([*pinned_roots(), emulator.roots()]).verify(evidence, datetime.now(UTC).timestamp())
    assert claims.report_data == b"\x42" * 64 and claims.measurements["measurement"] == measurement
    assert dict(claims.tcb) == TCB and claims.chip_id == emulator.chip_id.hex() and not claims.debug
    # Another ARK: the emulator's chain is refused by a client that pins only AMD's.
    assert refusal(lambda: VERIFIER.verify(evidence, datetime.now(UTC).timestamp())) is AttestationFailure.WRONG_ROOT


def test_the_emulators_certificate_table_is_what_a_host_hands_a_guest(emulator: SnpEmulator) -> None:
    report = EmulatedTsm(emulator, "00" * 48).report(bytes(64))
    assert report.provider == "sev_guest" and len(report.outblob) == 1184
    assert set(parse_certificate_table(report.auxblob)) == {"vcek", "ask"}


# -- the document: binding and the manifest's policy ---------------------------------------------------------
RELEASE_KEY = ed25519.Ed25519PrivateKey.generate()
REGISTERS = {"code": "ab" * 32, "config": "cd" * 32, "model": "ef" * 32}


def _verifier(policy: PlatformPolicy, emulator: SnpEmulator, now: float) -> AttestationVerifier:
    manifest = ReleaseManifest("securechat", "v1", {k: {v} for k, v in REGISTERS.items()}, 0, platforms=policy)
    return AttestationVerifier(
        None,
        sign_manifest(manifest, RELEASE_KEY),
        RELEASE_KEY.public_key(),
        clock=lambda: now,
        evidence_verifiers={Platform.SEV_SNP: SnpVerifier([*pinned_roots(), emulator.roots()])},
    )


def _document(emulator: SnpEmulator, nonce: str, now: float, *, debug: bool = False) -> dict[str, Any]:
    identity = WorkerIdentity("w-snp", "us-west-1", WorkerKeys.generate().public_keys)
    source = SnpSource(EmulatedTsm(emulator, emulated_launch_measurement(REGISTERS["code"]), debug=debug))
    return Attester(source, identity, REGISTERS, key_ttl_s=600, now=now).attest(nonce, now=now).to_dict()


def test_the_manifests_policy_decides_measurement_tcb_debug_and_vlek(emulator: SnpEmulator) -> None:
    now, nonce = datetime.now(UTC).timestamp(), new_nonce()
    measurement = emulated_launch_measurement(REGISTERS["code"])
    good = SnpPolicy(frozenset({measurement}), {"Genoa": dict(TCB)})
    document = _document(emulator, nonce, now)
    worker = _verifier(PlatformPolicy(sev_snp=good), emulator, now).verify(document, nonce)
    assert worker.claims is not None and worker.claims.platform is Platform.SEV_SNP

    def refused(policy: SnpPolicy, doc: dict[str, Any] = document) -> AttestationFailure:
        return refusal(lambda: _verifier(PlatformPolicy(sev_snp=policy), emulator, now).verify(doc, nonce))

    assert refused(SnpPolicy(frozenset({"00" * 48}))) is AttestationFailure.MEASUREMENT_NOT_ALLOWED
    assert refused(SnpPolicy(frozenset({measurement}), {"Genoa": {**TCB, "microcode": TCB["microcode"] + 1}})) is (
        AttestationFailure.TCB_TOO_OLD
    )
    assert refused(SnpPolicy(frozenset({measurement}), {"Turin": {}})) is AttestationFailure.PRODUCT_NOT_ALLOWED
    assert refused(good, _document(emulator, nonce, now, debug=True)) is AttestationFailure.DEBUG_ENABLED
    assert (
        refusal(lambda: _verifier(PlatformPolicy(simulated=True), emulator, now).verify(document, nonce))
        is AttestationFailure.PLATFORM_NOT_ALLOWED
    )


def test_recorded_evidence_in_a_document_does_not_carry_its_binding(emulator: SnpEmulator) -> None:
    """Real evidence, wrapped in a document of this worker: its report data vouches for someone else's keys."""
    now, nonce = AT, new_nonce()
    document = _document(emulator, nonce, now)
    document["evidence"] = MILAN.evidence()
    policy = SnpPolicy(frozenset({parse_report(MILAN.report).measurement.hex()}))
    verifier = AttestationVerifier(
        None,
        sign_manifest(
            ReleaseManifest(
                "s", "v1", {k: {v} for k, v in REGISTERS.items()}, 0, platforms=PlatformPolicy(sev_snp=policy)
            ),
            RELEASE_KEY,
        ),
        RELEASE_KEY.public_key(),
        clock=lambda: now,
        evidence_verifiers={Platform.SEV_SNP: VERIFIER},
    )
    assert refusal(lambda: verifier.verify(AttestationDocument.from_dict(document).to_dict(), nonce)) is (
        AttestationFailure.REPORT_DATA_MISMATCH
    )


def test_vlek_only_where_the_manifest_allows_it() -> None:
    claims = VERIFIER.verify(VLEK.evidence(), VLEK_AT)
    measurement = claims.measurements["measurement"]
    with pytest.raises(AttestationError) as refused:
        SnpPolicy(frozenset({measurement}), {"Milan": {}}).check(claims)
    assert refused.value.reason is AttestationFailure.VLEK_NOT_ALLOWED
    SnpPolicy(frozenset({measurement}), {"Milan": {}}, allow_vlek=True).check(claims)


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_the_shipped_tcb_floors_take_current_genoa_and_turin_and_leave_milan_to_the_release(sample: Sample) -> None:
    """The default floors are the newest production evidence per line (msft-*): those pass, anolis-turin (newer
    still) too; Milan is refused unless a release names it, and then the 2022-2023 Milan reports are too old."""
    claims = VERIFIER.verify(sample.evidence(), sample.at)
    measurement = claims.measurements["measurement"]
    by_default = SnpPolicy(frozenset({measurement}), allow_vlek=True)
    with_milan = SnpPolicy(frozenset({measurement}), default_snp_floors(("Milan", "Genoa", "Turin")), allow_vlek=True)
    if sample.product == "Milan":
        assert refusal(lambda: by_default.check(claims)) is AttestationFailure.PRODUCT_NOT_ALLOWED
        if sample.name in {"gosev-milan", "virtee-milan", "trustee-milan-vlek"}:  # older than Azure's 2026 TCB
            assert refusal(lambda: with_milan.check(claims)) is AttestationFailure.TCB_TOO_OLD
        else:
            with_milan.check(claims)
    else:
        by_default.check(claims)


def test_a_recorded_debug_guest_is_refused() -> None:
    """gosev-milan was launched with policy bit 19 (DEBUG): its evidence verifies, and is refused as debug."""
    evidence = BY_NAME["gosev-milan"].evidence()
    claims: Claims = VERIFIER.verify(evidence, AT)
    assert claims.debug
    assert refusal(lambda: verify_evidence(Platform.SEV_SNP, evidence, at=AT)) is AttestationFailure.DEBUG_ENABLED
