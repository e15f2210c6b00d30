"""Which platform a worker attests on and where its evidence comes from; which verifiers a client holds.

The worker side reads ``AttestationSettings`` (``attestation.platform``); the client side pins AMD's and Intel's
roots from this package, plus any extra ARK a developer pins for the emulated SEV-SNP platform.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from securechat.attestation.configfs_tsm import ConfigfsTsm
from securechat.attestation.evidence import EvidenceSource, EvidenceVerifier, Platform
from securechat.attestation.platform_root import ensure_root
from securechat.attestation.policy import (
    DEFAULT_SNP_PRODUCTS,
    DEFAULT_TDX_STATUSES,
    SIMULATED_ONLY,
    PlatformPolicy,
    SnpPolicy,
    TdxPolicy,
    default_snp_floors,
)
from securechat.attestation.sev_snp.emulator import PRODUCT as EMULATED_PRODUCT
from securechat.attestation.sev_snp.emulator import TCB as EMULATED_TCB
from securechat.attestation.sev_snp.emulator import EmulatedTsm, SnpEmulator, emulated_launch_measurement
from securechat.attestation.sev_snp.kds import Product
from securechat.attestation.sev_snp.source import SnpSource
from securechat.attestation.sev_snp.verify import ProductRoots, SnpVerifier, load_amd_certificate, pinned_roots
from securechat.attestation.simulated import SimulatedSource
from securechat.attestation.tdx import TdxSource, TdxVerifier
from securechat.config import AttestationSettings

EMULATOR_ENV: Final = "SECURECHAT_SNP_EMULATOR"
DEFAULT_EMULATOR_DIR: Final = Path("~/.config/securechat/snp-emulator")
GUEST_DEVICES: Final = {"sev-snp": Path("/dev/sev-guest"), "tdx": Path("/dev/tdx_guest")}


def emulator_dir(settings: AttestationSettings, environ: Mapping[str, str] = os.environ) -> Path:
    configured = settings.emulator_dir or environ.get(EMULATOR_ENV)
    return Path(os.path.expandvars(configured) if configured else DEFAULT_EMULATOR_DIR).expanduser()


def resolved_platform(settings: AttestationSettings) -> str:
    """``auto``: the confidential VM's own platform when the guest has its device, else ``simulated``."""
    if settings.platform != "auto":
        return settings.platform
    return next((name for name, device in GUEST_DEVICES.items() if device.exists()), "simulated")


def evidence_source(settings: AttestationSettings, worker_id: str, registers: Mapping[str, str]) -> EvidenceSource:
    """The worker's evidence source for its settings (``registers``: its measured registers, whose ``code``
    the emulated platform's launch measurement stands for)."""
    platform = resolved_platform(settings)
    if platform == "simulated":
        root = ensure_root(Path(settings.root_key_path) if settings.root_key_path else None)
        return SimulatedSource(root, worker_id, cert_ttl_s=settings.key_ttl_s, debug=settings.debug)
    if platform == "emulated-sev-snp":
        emulator = SnpEmulator.ensure(emulator_dir(settings))
        measurement = emulated_launch_measurement(registers["code"])
        return SnpSource(EmulatedTsm(emulator, measurement, debug=settings.debug))
    collector = ConfigfsTsm(Path(settings.configfs_tsm_path))
    if platform == "sev-snp":
        vcek = None
        if settings.snp_vcek_path:
            vcek = load_amd_certificate(Path(settings.snp_vcek_path).expanduser().read_bytes()).public_bytes(
                serialization.Encoding.DER
            )
        return SnpSource(collector, vcek)
    if settings.tdx_collateral_path is None:
        raise ValueError("attestation.platform tdx needs attestation.tdx_collateral_path (Intel's collateral)")
    return TdxSource(collector, Path(settings.tdx_collateral_path).expanduser())


def hardware_verifiers(extra_snp_arks: Sequence[Path] = ()) -> dict[Platform, EvidenceVerifier]:
    """The client's verifiers for hardware evidence: AMD's pinned ARKs (plus ``extra_snp_arks``, e.g. an emulated
    platform's ``ark.der``) and Intel's pinned SGX Root CA."""
    extra = [snp_roots_from(path) for path in extra_snp_arks]
    return {Platform.SEV_SNP: SnpVerifier([*pinned_roots(), *extra]), Platform.TDX: TdxVerifier()}


def snp_roots_from(path: Path) -> ProductRoots:
    """An extra ARK to trust (DER or PEM), its product read from its name ("ARK-Genoa")."""
    ark = load_amd_certificate(path.expanduser().read_bytes())
    names = ark.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    product = str(names[0].value).removeprefix("ARK-") if names else ""
    if product not in {p.value for p in Product}:
        raise ValueError(f"{path} is not an ARK of a known product (its name must be ARK-Milan, -Genoa or -Turin)")
    return ProductRoots(Product(product), ark)


def release_policy(
    platform: str,
    registers: Mapping[str, str],
    *,
    snp_measurements: Sequence[str] = (),
    snp_products: Sequence[str] = (),
    snp_min_tcb: Mapping[str, Mapping[str, int]] | None = None,
    snp_allow_vlek: bool = False,
    tdx_measurements: Mapping[str, Sequence[str]] | None = None,
    tdx_statuses: Sequence[str] = (),
) -> PlatformPolicy:
    """What a release's manifest accepts for workers on ``platform`` (``securechat manifest build``).

    ``emulated-sev-snp`` computes its launch measurement from the ``code`` register and takes the emulator's
    TCB as the floor; ``sev-snp`` and ``tdx`` need the launch measurements of the released image (for SNP,
    ``sev-snp-measure`` computes them from OVMF, kernel, initrd, command line and vCPUs). SNP accepts
    ``snp_products`` (default Genoa and Turin) at the shipped floors (``SNP_TCB_FLOORS``), each field raised or
    lowered by ``snp_min_tcb`` ({line: {field: n}})."""
    if platform == "simulated":
        return SIMULATED_ONLY
    if platform == "emulated-sev-snp":
        measurement = emulated_launch_measurement(registers["code"])
        floors = {EMULATED_PRODUCT.value: dict(EMULATED_TCB)}
        return PlatformPolicy(sev_snp=SnpPolicy(frozenset({measurement}), floors))
    if platform == "sev-snp":
        if not snp_measurements:
            raise ValueError("an SEV-SNP release names its launch measurements (--snp-measurement)")
        floors = default_snp_floors(tuple(snp_products) or DEFAULT_SNP_PRODUCTS)
        for product, changes in (snp_min_tcb or {}).items():
            if product not in floors:
                raise ValueError(f"a TCB floor for {product}, which the release does not accept (--snp-product)")
            floors[product].update(changes)
        policy = SnpPolicy(frozenset(m.lower() for m in snp_measurements), floors, snp_allow_vlek)
        return PlatformPolicy(sev_snp=policy)
    if platform == "tdx":
        if not tdx_measurements or "mrtd" not in tdx_measurements:
            raise ValueError("a TDX release names its MRTD values (--tdx-mrtd)")
        measurements = {name: frozenset(v.lower() for v in values) for name, values in tdx_measurements.items()}
        statuses = frozenset(tdx_statuses) or DEFAULT_TDX_STATUSES
        return PlatformPolicy(tdx=TdxPolicy(measurements, statuses))
    raise ValueError(f"name the platform the release runs on, not {platform!r}")
