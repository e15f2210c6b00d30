"""The simulated platform: a software root on the worker host stands in for the hardware's maker.

Chain (``platform_root``, ``certificate``): the root, pinned by clients, certifies a per-worker Ed25519
attestation key for one worker id; that key signs the evidence::

    evidence = {"certificate": {...}, "report_data": b64, "debug": bool, "signature": b64}
    signature = attestation_key.sign("securechat-simulated-evidence-v1" NUL canonical {certificate, report_data,
                                                                                       debug})

It proves nothing against whoever runs the worker host (the root's private key is on it): development and CI
only. A manifest that lists only hardware platforms refuses it (``platform_not_allowed``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any, Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation._canonical import b64decode, b64encode, exact_keys, read_bool, signed_bytes
from securechat.attestation.certificate import (
    ED25519_SIGNATURE_BYTES,
    AttestationKeyCertificate,
    endorse_attestation_key,
)
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.evidence import REPORT_DATA_BYTES, Claims, EvidenceSource, EvidenceVerifier, Platform
from securechat.attestation.platform_root import root_id

_DOMAIN: Final = b"securechat-simulated-evidence-v1"
_FIELDS: Final = frozenset({"certificate", "report_data", "debug", "signature"})


class SimulatedSource(EvidenceSource):
    """Inside one worker: an attestation key the root endorsed for this worker only, made at start-up.

    Keeps only the attestation key afterwards (see platform_root for why)."""

    platform = Platform.SIMULATED

    def __init__(
        self,
        root: ed25519.Ed25519PrivateKey,
        worker_id: str,
        *,
        cert_ttl_s: int,
        debug: bool = False,
        now: float | None = None,
    ) -> None:
        self._signing_key = ed25519.Ed25519PrivateKey.generate()
        issued_at = int(time.time() if now is None else now)
        self._certificate = endorse_attestation_key(
            root, worker_id, self._signing_key.public_key(), now=issued_at, ttl_s=cert_ttl_s
        )
        self._debug = debug

    @property
    def certificate(self) -> AttestationKeyCertificate:
        return self._certificate

    def evidence(self, report_data: bytes) -> dict[str, Any]:
        if len(report_data) != REPORT_DATA_BYTES:
            raise ValueError("report data is 64 bytes")
        body = {"certificate": self._certificate.to_dict(), "report_data": b64encode(report_data), "debug": self._debug}
        return {**body, "signature": b64encode(self._signing_key.sign(signed_bytes(_DOMAIN, body)))}

    def __repr__(self) -> str:
        return f"SimulatedSource(worker_id={self._certificate.subject!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("attestation keys never leave the process")


class SimulatedVerifier(EvidenceVerifier):
    """Checks simulated evidence against the pinned root."""

    platform = Platform.SIMULATED

    def __init__(self, pinned_root: ed25519.Ed25519PublicKey, *, max_skew_s: float) -> None:
        self._root = pinned_root
        self._root_id = root_id(pinned_root)
        self._max_skew_s = max_skew_s

    def verify(self, evidence: Mapping[str, Any], now: float) -> Claims:
        try:
            fields = exact_keys(evidence, _FIELDS)
            certificate = AttestationKeyCertificate.from_dict(fields["certificate"])
            report_data = b64decode(fields["report_data"], max_bytes=REPORT_DATA_BYTES)
            debug = read_bool(fields["debug"])
            signature = b64decode(fields["signature"], max_bytes=ED25519_SIGNATURE_BYTES)
        except (ValueError, TypeError):
            raise AttestationError(AttestationFailure.MALFORMED) from None
        if len(report_data) != REPORT_DATA_BYTES:
            raise AttestationError(AttestationFailure.MALFORMED)
        if not hmac.compare_digest(certificate.issuer, self._root_id):
            raise AttestationError(AttestationFailure.WRONG_ROOT)
        if not certificate.verify_issued_by(self._root):
            raise AttestationError(AttestationFailure.BAD_SIGNATURE)
        body = {"certificate": certificate.to_dict(), "report_data": b64encode(report_data), "debug": debug}
        try:
            certificate.attestation_key().verify(signature, signed_bytes(_DOMAIN, body))
        except (InvalidSignature, ValueError):
            raise AttestationError(AttestationFailure.BAD_SIGNATURE) from None
        if not certificate.not_before - self._max_skew_s <= now <= certificate.not_after:
            raise AttestationError(AttestationFailure.CERTIFICATE_EXPIRED)
        return Claims(
            platform=Platform.SIMULATED,
            report_data=report_data,
            debug=debug,
            signer="root",
            worker_id=certificate.subject,
            valid_until=certificate.not_after,
        )
