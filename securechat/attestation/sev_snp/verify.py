"""Check SEV-SNP evidence: the key certificate's chain to a pinned ARK, its match with the report, the signature.

Evidence (JSON, binary fields base64)::

    {"report": 1,184 bytes, "certificate": the VCEK or VLEK (DER), "intermediate": the ASK or ASVK (DER, optional)}

Steps, each refusing with its own reason (``AttestationFailure``):

1. parse everything (``malformed``);
2. the key certificate's kind matches the report's signing-key field: a VCEK carries the chip's hardware id, a
   VLEK does not (``signing_key_mismatch``: a VLEK presented as a VCEK, or the reverse);
3. chain: the intermediate whose key verifies the key certificate (the pinned ASK/ASVK of its product, or the one
   the evidence carries) must be signed by a pinned ARK of that product (RSA-PSS SHA-384; ``bad_signature``
   when no candidate verifies the key certificate, ``wrong_root`` when the one that does is not under a pinned
   ARK), and every certificate valid at the verification time (``certificate_expired``);
4. a v3+ report's CPUID names the certificate's processor line, a VCEK's hardware id is the report's CHIP_ID
   (``chip_mismatch``; Turin: its first 8 bytes), and its TCB
   extensions are the report's REPORTED_TCB in the product's layout (``tcb_mismatch``);
5. the report's ECDSA P-384 SHA-384 signature over bytes 0x000-0x29F verifies under the key (``bad_signature``).

The claims: report data, MEASUREMENT, the reported TCB by component, debug (policy bit 19), signer, product and
chip id. Whether those are acceptable (measurement, minimum TCB, VLEK) is the manifest's policy.
"""

from __future__ import annotations

import binascii
import hmac
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from securechat.attestation._canonical import b64decode, exact_keys
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.evidence import Claims, EvidenceVerifier, Platform
from securechat.attestation.sev_snp.abi import (
    REPORT_BYTES,
    SIGNING_KEY_VCEK,
    MalformedReport,
    SnpReport,
    parse_report,
)
from securechat.attestation.sev_snp.kds import (
    TURIN_HWID_BYTES,
    KeyCertificateInfo,
    MalformedCertificate,
    Product,
    product_of_cpuid,
    read_key_certificate,
    tcb_of,
)

MAX_CERTIFICATE_BYTES: Final = 8192
_REQUIRED: Final = frozenset({"report", "certificate"})
_OPTIONAL: Final = frozenset({"intermediate"})


@dataclass(frozen=True, slots=True)
class ProductRoots:
    """One product line's pinned chain: its ARK, and the intermediates AMD signed with it (ASK for VCEKs, ASVK for
    VLEKs)."""

    product: Product
    ark: x509.Certificate
    ask: x509.Certificate | None = None
    asvk: x509.Certificate | None = None


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s RSA key made ``child``'s RSA-PSS SHA-384 signature (AMD's only certificate scheme)."""
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or child.issuer != issuer.subject:
        return False
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, _pss(), hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def _valid_at(certificate: x509.Certificate, now: float) -> bool:
    instant = datetime.fromtimestamp(now, UTC)
    return certificate.not_valid_before_utc <= instant <= certificate.not_valid_after_utc


class SnpVerifier(EvidenceVerifier):
    platform = Platform.SEV_SNP

    def __init__(self, roots: Sequence[ProductRoots]) -> None:
        for root in roots:
            if not signed_by(root.ark, root.ark):
                raise ValueError(f"the pinned ARK of {root.product.value} is not self-signed")
        self._roots = tuple(roots)

    def verify(self, evidence: Mapping[str, Any], now: float) -> Claims:
        report, certificate, carried = _parse(evidence)
        try:
            info = read_key_certificate(certificate)
        except MalformedCertificate:
            raise AttestationError(AttestationFailure.MALFORMED) from None
        product = info.product()
        if product is None:
            raise AttestationError(AttestationFailure.WRONG_ROOT)  # no product whose roots this client pins
        is_vcek = info.hwid is not None
        if is_vcek != (report.signing_key == SIGNING_KEY_VCEK):
            raise AttestationError(AttestationFailure.SIGNING_KEY_MISMATCH)
        chain = self._chain(product, certificate, carried, is_vcek)
        if not all(_valid_at(link, now) for link in chain):
            raise AttestationError(AttestationFailure.CERTIFICATE_EXPIRED)
        _check_matches(report, info, product)
        _check_signature(report, certificate)
        return Claims(
            platform=Platform.SEV_SNP,
            report_data=report.report_data,
            debug=report.debug,
            measurements={"measurement": report.measurement.hex()},
            tcb=tcb_of(report.reported_tcb, product),
            signer="vcek" if is_vcek else "vlek",
            product=product.value,
            chip_id=report.chip_id.hex(),
            valid_until=int(certificate.not_valid_after_utc.timestamp()),
        )

    def _chain(
        self, product: Product, certificate: x509.Certificate, carried: x509.Certificate | None, is_vcek: bool
    ) -> tuple[x509.Certificate, ...]:
        """Key certificate, intermediate, ARK: the intermediate that signed the key certificate, under a pinned ARK."""
        pinned = [root for root in self._roots if root.product is product]
        candidates = [r.ask if is_vcek else r.asvk for r in pinned]
        if carried is not None:
            candidates.append(carried)
        intermediate = next((c for c in candidates if c is not None and signed_by(certificate, c)), None)
        if intermediate is None:
            raise AttestationError(AttestationFailure.BAD_SIGNATURE)
        ark = next((root.ark for root in pinned if signed_by(intermediate, root.ark)), None)
        if ark is None:
            raise AttestationError(AttestationFailure.WRONG_ROOT)
        return certificate, intermediate, ark


def _parse(evidence: Mapping[str, Any]) -> tuple[SnpReport, x509.Certificate, x509.Certificate | None]:
    try:
        if not isinstance(evidence, Mapping) or not _REQUIRED <= set(evidence) <= _REQUIRED | _OPTIONAL:
            raise ValueError("unexpected evidence fields")
        fields = exact_keys(evidence, frozenset(evidence))
        report = parse_report(b64decode(fields["report"], max_bytes=REPORT_BYTES))
        certificate = _certificate(fields["certificate"])
        carried = _certificate(fields["intermediate"]) if "intermediate" in fields else None
    except (ValueError, TypeError, binascii.Error, MalformedReport):
        raise AttestationError(AttestationFailure.MALFORMED) from None
    return report, certificate, carried


def _certificate(value: object) -> x509.Certificate:
    return load_amd_certificate(b64decode(value, max_bytes=MAX_CERTIFICATE_BYTES))


def load_amd_certificates(data: bytes) -> list[x509.Certificate]:
    """Certificates from AMD's KDS: one in DER, or any number in PEM. VCEKs and VLEKs have serial number 0, which
    RFC 5280 forbids and ``cryptography`` warns about on load: that one warning is expected here and silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive")
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]


def load_amd_certificate(data: bytes) -> x509.Certificate:
    """The first certificate of ``data`` (DER or PEM), as ``load_amd_certificates`` reads it."""
    return load_amd_certificates(data)[0]


def _check_matches(report: SnpReport, info: KeyCertificateInfo, product: Product) -> None:
    # A v3+ report names its processor line, which decides the TCB layout: it must be the certificate's.
    if report.cpuid is not None and product_of_cpuid(report.cpuid[0], report.cpuid[1]) not in (product, None):
        raise AttestationError(AttestationFailure.CHIP_MISMATCH)
    if info.hwid is not None:
        expected = report.chip_id[:TURIN_HWID_BYTES] if product is Product.TURIN else report.chip_id
        if not hmac.compare_digest(info.hwid, expected):
            raise AttestationError(AttestationFailure.CHIP_MISMATCH)
    reported = tcb_of(report.reported_tcb, product)
    if any(info.tcb.get(name) != reported[name] for name in product.tcb_fields):
        raise AttestationError(AttestationFailure.TCB_MISMATCH)


def _check_signature(report: SnpReport, certificate: x509.Certificate) -> None:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise AttestationError(AttestationFailure.MALFORMED)
    try:
        key.verify(encode_dss_signature(report.r, report.s), report.signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise AttestationError(AttestationFailure.BAD_SIGNATURE) from None


def pinned_roots() -> tuple[ProductRoots, ...]:
    """AMD's ARK, ASK and ASVK of Milan, Genoa and Turin, as shipped in this package (``trust/``)."""
    return tuple(
        ProductRoots(
            product,
            _packaged(f"{product.value.lower()}_ark.der"),
            _packaged(f"{product.value.lower()}_ask.der"),
            _packaged(f"{product.value.lower()}_asvk.der"),
        )
        for product in Product
    )


def _packaged(name: str) -> x509.Certificate:
    return load_amd_certificate(files("securechat.attestation.sev_snp").joinpath("trust", name).read_bytes())
