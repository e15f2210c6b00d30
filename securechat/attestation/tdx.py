"""Intel TDX: quotes from the TD's firmware in the worker; verified in the client with ``dcap-qvl``, offline.

Evidence (JSON)::

    {"quote": base64 (a v4 or v5 quote), "collateral": {...}}   (Intel's collateral: TCB info, QE identity, CRLs
                                                                 and their chains, as dcap-qvl's JSON form)

The client never fetches collateral: the worker carries the copy its operator keeps fresh (it lives about 30
days; ``attestation.tdx_collateral_path``), and the client checks it, with the quote's PCK chain, against the
pinned Intel SGX Root CA at the verification time. ``dcap-qvl`` checks signatures, chains, CRLs and dates,
refuses debug TDs and TDs without SEPT_VE_DISABLE itself, and reports the platform's TCB status; it does not
refuse an out-of-date platform, so the status is a claim here and the manifest decides (``tcb_statuses``,
UpToDate only by default).

Claims: report data, MRTD and RTMR0-3 (the launch measurements), the TCB status, debug (TD attribute bit 0).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any, Final

import dcap_qvl

from securechat.attestation._canonical import b64decode, b64encode, exact_keys
from securechat.attestation.configfs_tsm import ReportCollector, TsmError
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.evidence import Claims, EvidenceSource, EvidenceVerifier, Platform

MAX_QUOTE_BYTES: Final = 64 << 10
TD_ATTRIBUTE_DEBUG: Final = 1  # bit 0 of TDATTRIBUTES
_FIELDS: Final = frozenset({"quote", "collateral"})


def intel_sgx_root_ca() -> bytes:
    """Intel's SGX Root CA (DER), as shipped in this package (``trust/intel_sgx_root_ca.der``)."""
    return files("securechat.attestation").joinpath("trust", "intel_sgx_root_ca.der").read_bytes()


def _refusal(message: str) -> AttestationFailure:
    """dcap-qvl refuses with one ValueError ("Verification failed: ...") whose text names the failed check."""
    lowered = message.lower()
    if "debug mode" in lowered:
        return AttestationFailure.DEBUG_ENABLED
    if "sept_ve" in lowered:
        return AttestationFailure.TD_ATTRIBUTES_NOT_ALLOWED
    if "no matching tcb level" in lowered:  # a platform below every level Intel lists: out of date
        return AttestationFailure.TCB_STATUS_NOT_ALLOWED
    if "root ca" in lowered:  # the collateral's chain and CRL do not verify under the pinned root
        return AttestationFailure.WRONG_ROOT
    if any(word in lowered for word in ("expired", "issue date", "revoked", "crl", "tcb_info", "qe_identity", "fmspc")):
        return AttestationFailure.COLLATERAL_INVALID
    return AttestationFailure.BAD_SIGNATURE  # the quote's signature, or the QE report's hash over its key


class TdxVerifier(EvidenceVerifier):
    platform = Platform.TDX

    def __init__(self, root_ca_der: bytes | None = None) -> None:
        self._root_ca = root_ca_der if root_ca_der is not None else intel_sgx_root_ca()

    def verify(self, evidence: Mapping[str, Any], now: float) -> Claims:
        try:
            fields = exact_keys(evidence, _FIELDS)
            quote = b64decode(fields["quote"], max_bytes=MAX_QUOTE_BYTES)
            if not isinstance(fields["collateral"], Mapping):
                raise ValueError("collateral is a JSON object")
            collateral = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(fields["collateral"]))
            parsed = dcap_qvl.parse_quote(quote)
        except (ValueError, TypeError):
            raise AttestationError(AttestationFailure.MALFORMED) from None
        if not parsed.is_tdx():
            raise AttestationError(AttestationFailure.MALFORMED)
        try:
            verified = dcap_qvl.verify_with_root_ca(quote, collateral, self._root_ca, int(now))
        except ValueError as exc:
            raise AttestationError(_refusal(str(exc))) from None
        report = parsed.report
        attributes = int.from_bytes(bytes(report.td_attributes), "little")
        return Claims(
            platform=Platform.TDX,
            report_data=bytes(report.report_data),
            debug=bool(attributes & TD_ATTRIBUTE_DEBUG),
            measurements={
                "mrtd": bytes(report.mr_td).hex(),
                "rtmr0": bytes(report.rt_mr0).hex(),
                "rtmr1": bytes(report.rt_mr1).hex(),
                "rtmr2": bytes(report.rt_mr2).hex(),
                "rtmr3": bytes(report.rt_mr3).hex(),
            },
            tcb_status=str(verified.status),
            signer="pck",
            product=f"tdx-quote-v{parsed.header.version}",
        )


class TdxSource(EvidenceSource):
    """The worker's side: a fresh quote from configfs-tsm, and the operator's collateral file."""

    platform = Platform.TDX

    def __init__(self, collector: ReportCollector, collateral_path: Path) -> None:
        self._collector = collector
        self._collateral_path = collateral_path

    def evidence(self, report_data: bytes) -> dict[str, Any]:
        report = self._collector.report(report_data)
        if report.provider != "tdx_guest":
            raise TsmError(f"expected a TDX quote, the firmware is {report.provider}")
        try:
            collateral = json.loads(self._collateral_path.read_text())
        except (OSError, ValueError):
            raise TsmError("cannot read the TDX collateral file (attestation.tdx_collateral_path)") from None
        return {"quote": b64encode(report.outblob), "collateral": collateral}
