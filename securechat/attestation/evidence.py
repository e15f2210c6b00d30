"""The contract between an attestation document and the platform that vouches for it.

A platform (``simulated``, ``sev-snp``, ``tdx``) does two things, in two places:

- in the worker, an ``EvidenceSource`` produces evidence over 64 bytes of report data (``binding.py`` says what
  they are): the platform's raw report and whatever a verifier needs besides the pinned roots (a certificate
  chain, collateral), as a JSON object;
- in the client, an ``EvidenceVerifier`` checks that evidence against pinned roots at a given time and returns
  the ``Claims`` it proves (the report data, the launch measurements, the TCB, the debug state), or refuses with
  an ``AttestationError`` naming the check that failed. What the claims must be (which measurements, which
  minimum TCB) is the release manifest's policy, checked by the ``AttestationVerifier`` afterwards.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

REPORT_DATA_BYTES: Final = 64


class Platform(StrEnum):
    SIMULATED = "simulated"  # a software root on the worker host: development and CI only
    SEV_SNP = "sev-snp"  # AMD SEV-SNP: reports signed by a VCEK or VLEK under AMD's roots
    TDX = "tdx"  # Intel TDX: quotes signed under Intel's SGX root

    @property
    def hardware(self) -> bool:
        return self is not Platform.SIMULATED


@dataclass(frozen=True, slots=True)
class Claims:
    """What verified evidence proves about the machine a worker runs on."""

    platform: Platform
    report_data: bytes = field(repr=False)
    debug: bool
    # Launch measurements by name: "measurement" (SNP), "mrtd" and "rtmr0".."rtmr3" (TDX); none when simulated.
    measurements: Mapping[str, str] = field(default_factory=dict)
    # TCB components by name (SNP: bootloader, tee, snp, microcode, and fmc on Turin); empty for the others.
    tcb: Mapping[str, int] = field(default_factory=dict)
    tcb_status: str | None = None  # TDX: the TCB status of the platform (UpToDate, OutOfDate, ...)
    signer: str = ""  # what signed the report: "vcek" or "vlek" (SNP), "pck" (TDX), "root" (simulated)
    product: str = ""  # the processor line (SNP: Milan, Genoa, Turin) or TEE type
    chip_id: str = ""  # hex; the chip (SNP) the report came from, when the evidence names one
    worker_id: str | None = None  # the simulated platform certifies its attestation key for one worker
    valid_until: int | None = None  # unix seconds: the signing certificate's (or collateral's) end of validity

    def __post_init__(self) -> None:
        object.__setattr__(self, "measurements", MappingProxyType(dict(self.measurements)))
        object.__setattr__(self, "tcb", MappingProxyType(dict(self.tcb)))

    def to_dict(self) -> dict[str, Any]:
        """For tools (``securechat attest verify``): every claim, the report data in hex."""
        return {
            "platform": self.platform.value,
            "report_data": self.report_data.hex(),
            "debug": self.debug,
            "measurements": dict(self.measurements),
            "tcb": dict(self.tcb),
            "tcb_status": self.tcb_status,
            "signer": self.signer,
            "product": self.product,
            "chip_id": self.chip_id,
            "valid_until": self.valid_until,
        }


class EvidenceSource(ABC):
    """The worker's side: fresh evidence over ``report_data`` on every call (one per attestation request)."""

    platform: Platform

    @abstractmethod
    def evidence(self, report_data: bytes) -> dict[str, Any]:
        """The evidence as a JSON object (binary fields base64), ready to go into a document."""


class EvidenceVerifier(ABC):
    """The client's side: check evidence against the roots this verifier pins, at ``now``."""

    platform: Platform

    @abstractmethod
    def verify(self, evidence: Mapping[str, Any], now: float) -> Claims:
        """The claims the evidence proves; AttestationError (with its reason) when it proves nothing."""
