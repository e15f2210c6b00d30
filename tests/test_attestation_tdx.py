"""Intel TDX evidence: recorded quotes (v4 and v5) with their collateral verify against Intel's pinned root at a
pinned time, offline; each mutation is refused with its reason; the TCB status is the manifest's to accept.

Vectors: tests/vectors/tdx/ (sources and licences in tests/vectors/README.md)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import securechat.attestation
from securechat.attestation import AttestationError, AttestationFailure, Claims, Platform, PlatformPolicy, TdxPolicy
from securechat.attestation.offline import tdx_evidence_from_files, verify_evidence
from securechat.attestation.tdx import TdxVerifier

VECTORS = Path(__file__).parent / "vectors" / "tdx"
# Collateral lives about 30 days: each sample verifies inside its own window only.
PINNED = {
    "phala-v4-uptodate": 1751328000,  # 2025-07-01
    "phala-near-v4-uptodate": 1757894400,  # 2025-09-15
    "gtg-v5-uptodate": 1772323200,  # 2026-03-01
    "zkdcap-v4-outofdate": 1738368000,  # 2025-02-01
    "trustee-v4-debug": 1688169600,  # 2023-07-01
    "azure-v4-septve": 1738368000,
    "phala-v5-nomatch": 1772323200,
}
VERIFIER = TdxVerifier()


def evidence(name: str) -> dict[str, Any]:
    return tdx_evidence_from_files(VECTORS / name / "quote.bin", VECTORS / name / "collateral.json")


def refusal(call: Callable[[], object]) -> AttestationFailure:
    with pytest.raises(AttestationError) as refused:
        call()
    return refused.value.reason


@pytest.mark.parametrize(
    ("name", "version"), [("phala-v4-uptodate", 4), ("phala-near-v4-uptodate", 4), ("gtg-v5-uptodate", 5)]
)
def test_recorded_quotes_verify_against_intels_root(name: str, version: int) -> None:
    claims = VERIFIER.verify(evidence(name), PINNED[name])
    assert claims.platform is Platform.TDX and claims.tcb_status == "UpToDate" and not claims.debug
    assert claims.product == f"tdx-quote-v{version}" and claims.signer == "pck"
    assert set(claims.measurements) == {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"}
    assert all(len(value) == 96 for value in claims.measurements.values()) and len(claims.report_data) == 64


def _flip_quote(name: str, offset: int) -> dict[str, Any]:
    data = evidence(name)
    quote = bytearray(base64.b64decode(data["quote"]))
    quote[offset] ^= 0x01
    return {**data, "quote": base64.b64encode(bytes(quote)).decode()}


def _other_root() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2018, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2049, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _edited_tcb_info() -> dict[str, Any]:
    data = evidence("phala-v4-uptodate")
    collateral = copy.deepcopy(data["collateral"])
    tcb_info = json.loads(collateral["tcb_info"])
    tcb_info["nextUpdate"] = "2099-01-01T00:00:00Z"  # a host stretching stale collateral's life
    collateral["tcb_info"] = json.dumps(tcb_info)
    return {**data, "collateral": collateral}


@pytest.mark.parametrize(
    ("mutation", "make", "at", "reason"),
    [
        (
            "a flipped signed byte (MRTD)",
            lambda: _flip_quote("phala-v4-uptodate", 48 + 136),
            PINNED["phala-v4-uptodate"],
            AttestationFailure.BAD_SIGNATURE,
        ),
        (
            "a flipped signed byte (v5 body)",
            lambda: _flip_quote("gtg-v5-uptodate", 200),
            PINNED["gtg-v5-uptodate"],
            AttestationFailure.BAD_SIGNATURE,
        ),
        (
            "a flipped signature byte",
            lambda: _flip_quote("phala-v4-uptodate", 48 + 584 + 4 + 10),
            PINNED["phala-v4-uptodate"],
            AttestationFailure.BAD_SIGNATURE,
        ),
        (
            "collateral expired",
            lambda: evidence("phala-v4-uptodate"),
            PINNED["phala-v4-uptodate"] + 40 * 86400,
            AttestationFailure.COLLATERAL_INVALID,
        ),
        (
            "collateral not yet issued",
            lambda: evidence("phala-v4-uptodate"),
            PINNED["phala-v4-uptodate"] - 40 * 86400,
            AttestationFailure.COLLATERAL_INVALID,
        ),
        ("forged TCB info", _edited_tcb_info, PINNED["phala-v4-uptodate"], AttestationFailure.COLLATERAL_INVALID),
        (
            "another platform's collateral",
            lambda: {**evidence("phala-v4-uptodate"), "collateral": evidence("phala-near-v4-uptodate")["collateral"]},
            PINNED["phala-near-v4-uptodate"],
            AttestationFailure.COLLATERAL_INVALID,
        ),
        (
            "a debug TD",
            lambda: evidence("trustee-v4-debug"),
            PINNED["trustee-v4-debug"],
            AttestationFailure.DEBUG_ENABLED,
        ),
        (
            "a TD without SEPT_VE_DISABLE",
            lambda: evidence("azure-v4-septve"),
            PINNED["azure-v4-septve"],
            AttestationFailure.TD_ATTRIBUTES_NOT_ALLOWED,
        ),
        (
            "a platform below every TCB level",
            lambda: evidence("phala-v5-nomatch"),
            PINNED["phala-v5-nomatch"],
            AttestationFailure.TCB_STATUS_NOT_ALLOWED,
        ),
        (
            "a quote that is not one",
            lambda: {**evidence("phala-v4-uptodate"), "quote": "AAAA"},
            PINNED["phala-v4-uptodate"],
            AttestationFailure.MALFORMED,
        ),
        (
            "collateral that is not JSON of collateral",
            lambda: {**evidence("phala-v4-uptodate"), "collateral": {}},
            PINNED["phala-v4-uptodate"],
            AttestationFailure.MALFORMED,
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_each_mutation_is_refused_with_its_reason(
    mutation: str, make: Callable[[], dict[str, Any]], at: int, reason: AttestationFailure
) -> None:
    assert refusal(lambda: VERIFIER.verify(make(), at)) is reason, mutation


def test_the_pinned_root_is_intels() -> None:
    """The SHA-256 Intel's root has (securechat/attestation/trust/README.md): a changed root fails here."""
    pinned = (Path(securechat.attestation.__file__).parent / "trust" / "intel_sgx_root_ca.der").read_bytes()
    assert hashlib.sha256(pinned).hexdigest() == "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"


def test_another_root_is_refused() -> None:
    other = TdxVerifier(root_ca_der=_other_root())
    assert refusal(lambda: other.verify(evidence("phala-v4-uptodate"), PINNED["phala-v4-uptodate"])) is (
        AttestationFailure.WRONG_ROOT
    )


def test_an_out_of_date_platform_is_refused_unless_the_manifest_accepts_it() -> None:
    """dcap-qvl reports OutOfDate as a success; the manifest's policy decides, UpToDate only by default."""
    at = PINNED["zkdcap-v4-outofdate"]
    claims: Claims = VERIFIER.verify(evidence("zkdcap-v4-outofdate"), at)
    assert claims.tcb_status == "OutOfDate"
    mrtd = claims.measurements["mrtd"]
    strict = PlatformPolicy(tdx=TdxPolicy({"mrtd": frozenset({mrtd})}))
    lenient = PlatformPolicy(tdx=TdxPolicy({"mrtd": frozenset({mrtd})}, frozenset({"UpToDate", "OutOfDate"})))
    check = evidence("zkdcap-v4-outofdate")
    assert refusal(lambda: verify_evidence(Platform.TDX, check, at=at, policy=strict)) is (
        AttestationFailure.TCB_STATUS_NOT_ALLOWED
    )
    assert refusal(lambda: verify_evidence(Platform.TDX, check, at=at)) is AttestationFailure.TCB_STATUS_NOT_ALLOWED
    assert verify_evidence(Platform.TDX, check, at=at, policy=lenient).tcb_status == "OutOfDate"


def test_measurements_and_report_data_are_checked_against_what_the_caller_expects() -> None:
    at = PINNED["phala-v4-uptodate"]
    claims = VERIFIER.verify(evidence("phala-v4-uptodate"), at)
    other_mrtd = PlatformPolicy(tdx=TdxPolicy({"mrtd": frozenset({"00" * 48})}))
    assert refusal(lambda: verify_evidence(Platform.TDX, evidence("phala-v4-uptodate"), at=at, policy=other_mrtd)) is (
        AttestationFailure.MEASUREMENT_NOT_ALLOWED
    )
    rtmr_too = PlatformPolicy(
        tdx=TdxPolicy({"mrtd": frozenset({claims.measurements["mrtd"]}), "rtmr3": frozenset({"11" * 48})})
    )
    assert refusal(lambda: verify_evidence(Platform.TDX, evidence("phala-v4-uptodate"), at=at, policy=rtmr_too)) is (
        AttestationFailure.MEASUREMENT_NOT_ALLOWED
    )
    assert (
        refusal(lambda: verify_evidence(Platform.TDX, evidence("phala-v4-uptodate"), at=at, report_data=b"\x01" * 64))
        is AttestationFailure.REPORT_DATA_MISMATCH
    )
    assert verify_evidence(Platform.TDX, evidence("phala-v4-uptodate"), at=at, report_data=claims.report_data)
