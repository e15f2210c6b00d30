"""Verify a platform's raw evidence on its own: an SEV-SNP report or a TDX quote, with what it needs, at a time.

For operators checking a machine (``securechat attest verify``) and for programs (``verify_evidence``, exported
by the SDK): the same evidence verifiers clients use, against the same pinned roots, and optionally a release
manifest's policy for that platform (launch measurements, minimum TCB, accepted TCB statuses, VLEK) and debug
off, and the report data a caller expects. Never a root from the evidence: ARKs are AMD's (plus any the caller
pins), the TDX root is Intel's.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from securechat.attestation._canonical import b64encode
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.evidence import Claims, Platform
from securechat.attestation.platforms import hardware_verifiers
from securechat.attestation.policy import DEFAULT_TDX_STATUSES, PlatformPolicy
from securechat.attestation.sev_snp.verify import load_amd_certificate, load_amd_certificates, signed_by


def verify_evidence(
    platform: Platform,
    evidence: Mapping[str, Any],
    *,
    at: float,
    snp_arks: Sequence[Path] = (),
    policy: PlatformPolicy | None = None,
    report_data: bytes | None = None,
) -> Claims:
    """The claims of ``evidence`` (the JSON a document carries), verified at ``at``; AttestationError if not.

    With ``policy``, the platform must be one it accepts and the claims what it requires; without one, a TDX
    platform must be UpToDate (as the manifest's default). Debug is refused either way. With ``report_data``,
    the evidence must carry exactly those bytes."""
    if not platform.hardware:
        raise AttestationError(AttestationFailure.WRONG_ROOT)  # the simulated root is no hardware root
    if policy is not None and not policy.allows(platform):
        raise AttestationError(AttestationFailure.PLATFORM_NOT_ALLOWED)
    claims = hardware_verifiers(snp_arks)[platform].verify(evidence, at)
    if report_data is not None and not hmac.compare_digest(claims.report_data, report_data):
        raise AttestationError(AttestationFailure.REPORT_DATA_MISMATCH)
    if policy is not None:
        policy.check(claims)
    elif claims.platform is Platform.TDX and claims.tcb_status not in DEFAULT_TDX_STATUSES:
        raise AttestationError(AttestationFailure.TCB_STATUS_NOT_ALLOWED)
    if claims.debug:
        raise AttestationError(AttestationFailure.DEBUG_ENABLED)
    return claims


def snp_evidence_from_files(report: Path, certificate: Path, chain: Path | None = None) -> dict[str, Any]:
    """SEV-SNP evidence from an operator's files: the raw report, the VCEK or VLEK (DER or PEM), and optionally
    a PEM chain whose intermediate (the ASK or ASVK) comes along; a self-signed ARK in it is ignored."""
    key_certificate = load_amd_certificate(certificate.read_bytes()).public_bytes(serialization.Encoding.DER)
    evidence = {"report": b64encode(report.read_bytes()), "certificate": b64encode(key_certificate)}
    if chain is not None:
        intermediates = [c for c in load_amd_certificates(chain.read_bytes()) if not signed_by(c, c)]
        if intermediates:
            evidence["intermediate"] = b64encode(intermediates[0].public_bytes(serialization.Encoding.DER))
    return evidence


def tdx_evidence_from_files(quote: Path, collateral: Path) -> dict[str, Any]:
    """TDX evidence from an operator's files: the raw quote and Intel's collateral (dcap-qvl's JSON)."""
    return {"quote": b64encode(quote.read_bytes()), "collateral": json.loads(collateral.read_text())}
