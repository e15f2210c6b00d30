"""What a release accepts of each platform: the part of the release manifest about the machine under a worker.

A manifest lists the platforms whose evidence it accepts, each with what its claims must be::

    "platforms": {
      "simulated": {},                                        (development only: no hardware protection)
      "sev-snp": {"measurements": [hex 96, ...],              (launch digests of the released image)
                  "min_tcb": {"Genoa": {"bootloader": n, "tee": n, "snp": n, "microcode": n},
                              "Turin": {..., "fmc": n}},      (the processor lines accepted, each's floor)
                  "allow_vlek": false},
      "tdx": {"measurements": {"mrtd": [hex 96, ...][, "rtmr0".."rtmr3": [...]]},
              "tcb_statuses": ["UpToDate"]}
    }

A platform the manifest does not list is refused (``platform_not_allowed``): a manifest without "simulated"
can never be talked into the simulated platform by the host. TCB numbers are per processor line (a Genoa's
microcode 84 is not older than a Milan's 219), so SEV-SNP floors are per line, and a line without one is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from securechat.attestation._canonical import exact_keys, read_bool, read_hex, read_int
from securechat.attestation.errors import AttestationError, AttestationFailure
from securechat.attestation.evidence import Claims, Platform

SNP_TCB_FIELDS: Final = ("bootloader", "tee", "snp", "microcode", "fmc")
TDX_MEASUREMENTS: Final = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3")
TDX_TCB_STATUSES: Final = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
    }
)
DEFAULT_TDX_STATUSES: Final = frozenset({"UpToDate"})  # an out-of-date platform only where a manifest says so
MEASUREMENT_HEX: Final = 96  # 48-byte digests: SNP MEASUREMENT, TDX MRTD and RTMRs
MAX_MEASUREMENTS: Final = 64


def _read_measurements(value: object) -> frozenset[str]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_MEASUREMENTS or value != sorted(set(value)):
        raise ValueError("measurements must be a sorted, unique, non-empty list")
    return frozenset(read_hex(item, min_chars=MEASUREMENT_HEX, max_chars=MEASUREMENT_HEX) for item in value)


# What a release accepts of each AMD processor line unless it says otherwise (docs/confidential-vms.md, "TCB
# floors"): the REPORTED_TCB of the newest production evidence we hold for the line (Azure, February 2026:
# tests/vectors/sev_snp/msft-*), which carries the fixes AMD had shipped by then. Milan is left out of the
# default: a software-only extraction of its chips' root seed was published in May 2026 (arXiv 2605.12990),
# after which a Milan report can be forged for any TCB; a release takes Milan only when it names it.
SNP_TCB_FLOORS: Final[Mapping[str, Mapping[str, int]]] = MappingProxyType(
    {
        "Milan": MappingProxyType({"bootloader": 4, "tee": 0, "snp": 24, "microcode": 219}),
        "Genoa": MappingProxyType({"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84}),
        "Turin": MappingProxyType({"fmc": 1, "bootloader": 1, "tee": 1, "snp": 4, "microcode": 81}),
    }
)
DEFAULT_SNP_PRODUCTS: Final = ("Genoa", "Turin")


def default_snp_floors(products: tuple[str, ...] = DEFAULT_SNP_PRODUCTS) -> dict[str, dict[str, int]]:
    unknown = set(products) - set(SNP_TCB_FLOORS)
    if unknown:
        raise ValueError(f"unknown AMD processor line {sorted(unknown)[0]!r} (Milan, Genoa or Turin)")
    return {product: dict(SNP_TCB_FLOORS[product]) for product in products}


@dataclass(frozen=True, slots=True)
class SnpPolicy:
    measurements: frozenset[str]
    # Processor line -> TCB floor; a line absent is refused. The default: Genoa and Turin at SNP_TCB_FLOORS.
    min_tcb: Mapping[str, Mapping[str, int]] = field(default_factory=default_snp_floors)
    allow_vlek: bool = False

    def __post_init__(self) -> None:
        if not self.measurements or not self.min_tcb:
            raise ValueError("an SEV-SNP policy names its launch measurements and the processor lines it accepts")
        if not set(self.min_tcb) <= set(SNP_TCB_FLOORS):
            raise ValueError("an SEV-SNP policy names known processor lines (Milan, Genoa, Turin)")
        if not all(set(floor) <= set(SNP_TCB_FIELDS) for floor in self.min_tcb.values()):
            raise ValueError("an SEV-SNP TCB floor names known fields (bootloader, tee, snp, microcode, fmc)")
        frozen = {product: MappingProxyType(dict(floor)) for product, floor in self.min_tcb.items()}
        object.__setattr__(self, "min_tcb", MappingProxyType(frozen))

    def check(self, claims: Claims) -> None:
        if claims.measurements.get("measurement") not in self.measurements:
            raise AttestationError(AttestationFailure.MEASUREMENT_NOT_ALLOWED)
        floor = self.min_tcb.get(claims.product)
        if floor is None:
            raise AttestationError(AttestationFailure.PRODUCT_NOT_ALLOWED)
        for name, minimum in floor.items():
            if claims.tcb.get(name, -1) < minimum:
                raise AttestationError(AttestationFailure.TCB_TOO_OLD)
        if claims.signer == "vlek" and not self.allow_vlek:
            raise AttestationError(AttestationFailure.VLEK_NOT_ALLOWED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "measurements": sorted(self.measurements),
            "min_tcb": {product: dict(floor) for product, floor in self.min_tcb.items()},
            "allow_vlek": self.allow_vlek,
        }

    @classmethod
    def from_dict(cls, data: object) -> SnpPolicy:
        fields = exact_keys(data, frozenset({"measurements", "min_tcb", "allow_vlek"}))
        min_tcb = fields["min_tcb"]
        if not isinstance(min_tcb, Mapping) or not all(isinstance(floor, Mapping) for floor in min_tcb.values()):
            raise ValueError("invalid min_tcb")
        return cls(
            _read_measurements(fields["measurements"]),
            {
                str(product): {str(name): read_int(value) for name, value in floor.items()}
                for product, floor in min_tcb.items()
            },
            read_bool(fields["allow_vlek"]),
        )


@dataclass(frozen=True, slots=True)
class TdxPolicy:
    measurements: Mapping[str, frozenset[str]]  # "mrtd" always; RTMRs that are named must match too
    tcb_statuses: frozenset[str] = DEFAULT_TDX_STATUSES

    def __post_init__(self) -> None:
        if "mrtd" not in self.measurements or not set(self.measurements) <= set(TDX_MEASUREMENTS):
            raise ValueError("a TDX policy names its MRTD values (and RTMRs by name)")
        if not self.tcb_statuses or not self.tcb_statuses <= TDX_TCB_STATUSES:
            raise ValueError("unknown TDX TCB status")
        object.__setattr__(self, "measurements", MappingProxyType(dict(self.measurements)))

    def check(self, claims: Claims) -> None:
        for name, allowed in self.measurements.items():
            if claims.measurements.get(name) not in allowed:
                raise AttestationError(AttestationFailure.MEASUREMENT_NOT_ALLOWED)
        if claims.tcb_status not in self.tcb_statuses:
            raise AttestationError(AttestationFailure.TCB_STATUS_NOT_ALLOWED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "measurements": {name: sorted(values) for name, values in sorted(self.measurements.items())},
            "tcb_statuses": sorted(self.tcb_statuses),
        }

    @classmethod
    def from_dict(cls, data: object) -> TdxPolicy:
        fields = exact_keys(data, frozenset({"measurements", "tcb_statuses"}))
        measurements, statuses = fields["measurements"], fields["tcb_statuses"]
        if not isinstance(measurements, Mapping) or not isinstance(statuses, list) or statuses != sorted(set(statuses)):
            raise ValueError("invalid TDX policy")
        return cls(
            {str(name): _read_measurements(values) for name, values in measurements.items()}, frozenset(statuses)
        )


@dataclass(frozen=True, slots=True)
class PlatformPolicy:
    simulated: bool = False
    sev_snp: SnpPolicy | None = None
    tdx: TdxPolicy | None = None

    def __post_init__(self) -> None:
        if not (self.simulated or self.sev_snp or self.tdx):
            raise ValueError("a manifest accepts at least one platform")

    @property
    def platforms(self) -> frozenset[Platform]:
        named = {Platform.SIMULATED: self.simulated, Platform.SEV_SNP: self.sev_snp, Platform.TDX: self.tdx}
        return frozenset(platform for platform, policy in named.items() if policy)

    def allows(self, platform: Platform) -> bool:
        return platform in self.platforms

    def union(self, other: PlatformPolicy) -> PlatformPolicy:
        """Both releases' platforms (a rolling upgrade); where both name one, this policy's applies."""
        return PlatformPolicy(
            simulated=self.simulated or other.simulated,
            sev_snp=self.sev_snp or other.sev_snp,
            tdx=self.tdx or other.tdx,
        )

    def check(self, claims: Claims) -> None:
        """The platform's own policy over verified claims (the platform is one this policy allows)."""
        if claims.platform is Platform.SEV_SNP and self.sev_snp is not None:
            self.sev_snp.check(claims)
        elif claims.platform is Platform.TDX and self.tdx is not None:
            self.tdx.check(claims)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.simulated:
            data[Platform.SIMULATED.value] = {}
        if self.sev_snp is not None:
            data[Platform.SEV_SNP.value] = self.sev_snp.to_dict()
        if self.tdx is not None:
            data[Platform.TDX.value] = self.tdx.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: object) -> PlatformPolicy:
        if not isinstance(data, Mapping) or not set(data) <= {p.value for p in Platform}:
            raise ValueError("invalid platforms")
        if Platform.SIMULATED.value in data and data[Platform.SIMULATED.value] != {}:
            raise ValueError("the simulated platform takes no policy")
        snp, tdx = data.get(Platform.SEV_SNP.value), data.get(Platform.TDX.value)
        return cls(
            simulated=Platform.SIMULATED.value in data,
            sev_snp=None if snp is None else SnpPolicy.from_dict(snp),
            tdx=None if tdx is None else TdxPolicy.from_dict(tdx),
        )


SIMULATED_ONLY: Final = PlatformPolicy(simulated=True)
