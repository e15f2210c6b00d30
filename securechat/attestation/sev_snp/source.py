"""The worker's side of SEV-SNP: a fresh report over the report data, and the certificate that signed it.

The report comes from the firmware through configfs-tsm (or the emulator). The VCEK (or VLEK) comes from the
certificate table the host hands the guest with the report (``auxblob``, when the hypervisor is configured to,
as Azure's and GCP's are), else from a file the operator fetched from AMD's KDS for this chip and TCB
(``attestation.snp_vcek_path``); the ASK comes along when either provides it (clients pin it anyway).
"""

from __future__ import annotations

from typing import Any

from securechat.attestation._canonical import b64encode
from securechat.attestation.configfs_tsm import ReportCollector, TsmError
from securechat.attestation.evidence import EvidenceSource, Platform
from securechat.attestation.sev_snp.abi import MalformedReport, parse_certificate_table


class SnpSource(EvidenceSource):
    platform = Platform.SEV_SNP

    def __init__(
        self, collector: ReportCollector, key_certificate: bytes | None = None, intermediate: bytes | None = None
    ) -> None:
        """``key_certificate``/``intermediate``: DER of the VCEK (or VLEK) and its ASK, for hosts that provide
        no certificate table."""
        self._collector = collector
        self._key_certificate = key_certificate
        self._intermediate = intermediate

    def evidence(self, report_data: bytes) -> dict[str, Any]:
        report = self._collector.report(report_data)
        if report.provider != "sev_guest":
            raise TsmError(f"expected an SEV-SNP report, the firmware is {report.provider}")
        try:
            table = parse_certificate_table(report.auxblob) if report.auxblob else {}
        except MalformedReport:
            raise TsmError("the host's certificate table does not parse") from None
        certificate = table.get("vcek") or table.get("vlek") or self._key_certificate
        if certificate is None:
            raise TsmError("no VCEK: the host provides no certificate table and attestation.snp_vcek_path is unset")
        evidence = {"report": b64encode(report.outblob), "certificate": b64encode(certificate)}
        intermediate = table.get("ask") if "vcek" in table else self._intermediate
        if intermediate is not None:
            evidence["intermediate"] = b64encode(intermediate)
        return evidence
