"""Which evidence source a worker's settings pick, and which roots a client's verifiers hold."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from securechat.attestation import AttestationError, AttestationFailure, Platform
from securechat.attestation.configfs_tsm import TsmError
from securechat.attestation.platforms import (
    emulator_dir,
    evidence_source,
    hardware_verifiers,
    resolved_platform,
    snp_roots_from,
)
from securechat.attestation.sev_snp.emulator import SnpEmulator, emulated_launch_measurement
from securechat.attestation.sev_snp.source import SnpSource
from securechat.attestation.simulated import SimulatedSource
from securechat.attestation.tdx import TdxSource
from securechat.config import AttestationSettings

CODE = "ab" * 32


def test_auto_is_simulated_without_a_guest_device() -> None:
    # This machine is no confidential VM: neither /dev/sev-guest nor /dev/tdx_guest exists.
    assert not Path("/dev/sev-guest").exists() and not Path("/dev/tdx_guest").exists()
    assert resolved_platform(AttestationSettings(platform="auto")) == "simulated"
    assert resolved_platform(AttestationSettings(platform="tdx")) == "tdx"


def test_the_emulator_directory_comes_from_settings_then_the_environment(tmp_path: Path) -> None:
    assert emulator_dir(AttestationSettings(emulator_dir=str(tmp_path / "a")), {}) == tmp_path / "a"
    assert emulator_dir(AttestationSettings(), {"SECURECHAT_SNP_EMULATOR": str(tmp_path / "b")}) == tmp_path / "b"
    assert emulator_dir(AttestationSettings(), {}) == Path("~/.config/securechat/snp-emulator").expanduser()


def test_simulated_settings_give_the_software_root(tmp_path: Path) -> None:
    source = evidence_source(AttestationSettings(root_key_path=str(tmp_path / "root.pem")), "w0", {"code": CODE})
    assert isinstance(source, SimulatedSource) and source.platform is Platform.SIMULATED


def test_the_emulated_platform_reports_the_code_register_and_only_its_pinned_ark_verifies_it(tmp_path: Path) -> None:
    settings = AttestationSettings(platform="emulated-sev-snp", emulator_dir=str(tmp_path / "emulator"))
    source = evidence_source(settings, "w0", {"code": CODE})
    assert isinstance(source, SnpSource)
    evidence = source.evidence(b"\x07" * 64)
    with pytest.raises(AttestationError) as refused:  # AMD's roots alone never take the emulator's ARK
        hardware_verifiers()[Platform.SEV_SNP].verify(evidence, time.time())
    assert refused.value.reason is AttestationFailure.WRONG_ROOT
    claims = hardware_verifiers([tmp_path / "emulator" / "ark.der"])[Platform.SEV_SNP].verify(evidence, time.time())
    assert claims.measurements == {"measurement": emulated_launch_measurement(CODE)}
    assert claims.report_data == b"\x07" * 64 and claims.product == "Genoa"
    assert SnpEmulator.ensure(tmp_path / "emulator").ark == SnpEmulator.open(tmp_path / "emulator").ark  # kept


def test_hardware_settings_read_configfs_and_name_what_is_missing(tmp_path: Path) -> None:
    snp = evidence_source(AttestationSettings(platform="sev-snp", configfs_tsm_path=str(tmp_path)), "w0", {})
    assert isinstance(snp, SnpSource)
    with pytest.raises(TsmError):  # no SEV-SNP firmware behind an empty directory
        snp.evidence(b"\x00" * 64)
    with pytest.raises(ValueError, match="tdx_collateral_path"):
        evidence_source(AttestationSettings(platform="tdx"), "w0", {})
    collateral = tmp_path / "collateral.json"
    collateral.write_text("{}")
    tdx = evidence_source(AttestationSettings(platform="tdx", tdx_collateral_path=str(collateral)), "w0", {})
    assert isinstance(tdx, TdxSource)


def test_an_extra_ark_must_name_a_known_product(tmp_path: Path) -> None:
    SnpEmulator.ensure(tmp_path / "emulator")
    assert snp_roots_from(tmp_path / "emulator" / "ark.der").product.value == "Genoa"
    (tmp_path / "vcek.der").write_bytes((tmp_path / "emulator" / "vcek.der").read_bytes())
    with pytest.raises(ValueError, match="not an ARK of a known product"):
        snp_roots_from(tmp_path / "vcek.der")
