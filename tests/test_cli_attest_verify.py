"""``securechat attest verify``: an operator checks one machine's raw evidence offline, against AMD's or Intel's
pinned roots at a pinned time, optionally against a signed release manifest; JSON out, exit 0 only when verified.

Vectors: tests/vectors/sev_snp/ and tests/vectors/tdx/ (sources and licences in tests/vectors/README.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from securechat.attestation import AttestationError, AttestationFailure, Platform
from securechat.attestation.sev_snp.abi import parse_report
from securechat.cli import main
from securechat.client import snp_evidence_from_files, tdx_evidence_from_files, verify_evidence

VECTORS = Path(__file__).parent / "vectors"
SNP_AT = "2026-11-01T00:00:00Z"  # every VCEK here is valid then
TDX_AT = {"phala-v4-uptodate": "1751328000", "zkdcap-v4-outofdate": "2025-02-01T00:00:00+00:00"}


def snp_argv(name: str, *extra: str) -> list[str]:
    folder = VECTORS / "sev_snp" / name
    vcek = next(folder.glob("v*ek.der"))
    return ["attest", "verify", "--evidence", str(folder / "report.bin"), "--vcek", str(vcek), "--at", SNP_AT, *extra]


def tdx_argv(name: str, *extra: str) -> list[str]:
    folder = VECTORS / "tdx" / name
    argv = ["attest", "verify", "--platform", "tdx", "--evidence", str(folder / "quote.bin")]
    return [*argv, "--collateral", str(folder / "collateral.json"), "--at", TDX_AT[name], *extra]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(argv)
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("name", "product"), [("msft-milan", "Milan"), ("msft-genoa", "Genoa"), ("msft-turin", "Turin")]
)
def test_reports_of_three_generations_verify_and_print_their_claims(
    name: str, product: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, verdict = run(snp_argv(name), capsys)
    report = parse_report((VECTORS / "sev_snp" / name / "report.bin").read_bytes())
    assert code == 0 and verdict["verdict"] == "verified" and verdict["reason"] is None
    claims = verdict["claims"]
    assert (claims["platform"], claims["product"], claims["signer"]) == ("sev-snp", product, "vcek")
    assert claims["measurements"] == {"measurement": report.measurement.hex()}
    assert claims["report_data"] == report.report_data.hex() and claims["debug"] is False


def test_a_changed_byte_or_a_time_past_the_vceks_life_is_refused_with_its_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = bytearray((VECTORS / "sev_snp" / "msft-genoa" / "report.bin").read_bytes())
    report[0x90] ^= 1  # a bit of the launch measurement
    forged = tmp_path / "report.bin"
    forged.write_bytes(bytes(report))
    argv = snp_argv("msft-genoa")
    argv[argv.index("--evidence") + 1] = str(forged)
    assert run(argv, capsys) == (1, {"verdict": "refused", "reason": "bad_signature", "claims": None})
    late = snp_argv("msft-genoa")
    late[late.index("--at") + 1] = "2040-01-01T00:00:00Z"
    assert run(late, capsys)[1]["reason"] == "certificate_expired"


def test_the_expected_report_data_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    report = parse_report((VECTORS / "sev_snp" / "msft-turin" / "report.bin").read_bytes())
    assert run(snp_argv("msft-turin", "--report-data", report.report_data.hex()), capsys)[0] == 0
    code, verdict = run(snp_argv("msft-turin", "--report-data", "ff" * 64), capsys)
    assert (code, verdict["reason"]) == (1, "report_data_mismatch")


def test_tdx_quotes_verify_and_an_out_of_date_platform_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, verdict = run(tdx_argv("phala-v4-uptodate"), capsys)
    assert code == 0 and verdict["claims"]["platform"] == "tdx" and verdict["claims"]["tcb_status"] == "UpToDate"
    assert set(verdict["claims"]["measurements"]) == {"mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"}
    code, verdict = run(tdx_argv("zkdcap-v4-outofdate"), capsys)
    assert (code, verdict["reason"]) == (1, "tcb_status_not_allowed")


def test_a_signed_manifest_decides_measurements_and_tcb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "app.yaml"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "qwen2"}')
    config.write_text(f"engine: {{kind: hf, model: {tmp_path / 'model'}, device: cpu}}\n")
    release_key = tmp_path / "release.pem"
    assert main(["release-key", "init", "--path", str(release_key)]) == 0
    measurement = parse_report((VECTORS / "sev_snp" / "msft-milan" / "report.bin").read_bytes()).measurement.hex()

    def manifest(path: Path, *flags: str) -> list[str]:
        argv = ["manifest", "build", "--config", str(config), "--release-key", str(release_key), "--out", str(path)]
        assert main([*argv, "--platform", "sev-snp", *flags]) == 0
        capsys.readouterr()
        return ["--manifest", str(path), "--release-pub", f"{release_key}.pub"]

    ours = manifest(tmp_path / "ours.json", "--snp-measurement", measurement, "--snp-product", "Milan")
    assert run(snp_argv("msft-milan", *ours), capsys)[0] == 0
    code, verdict = run(snp_argv("msft-turin", *ours), capsys)
    assert (code, verdict["reason"]) == (1, "measurement_not_allowed")
    newer = manifest(
        tmp_path / "newer.json",
        "--snp-measurement",
        measurement,
        "--snp-product",
        "Milan",
        "--snp-min-tcb",
        "Milan:snp=255",
    )
    assert run(snp_argv("msft-milan", *newer), capsys)[1]["reason"] == "tcb_too_old"
    no_milan = manifest(tmp_path / "no-milan.json", "--snp-measurement", measurement)  # the default lines
    assert run(snp_argv("msft-milan", *no_milan), capsys)[1]["reason"] == "product_not_allowed"
    assert run(tdx_argv("phala-v4-uptodate", *ours), capsys)[1]["reason"] == "platform_not_allowed"

    other_key = tmp_path / "other.pem"
    main(["release-key", "init", "--path", str(other_key)])
    capsys.readouterr()
    unsigned = [*ours[:2], "--release-pub", f"{other_key}.pub"]
    assert main(snp_argv("msft-milan", *unsigned)) == 2
    assert "is not signed by the release key" in capsys.readouterr().err


def test_missing_inputs_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = VECTORS / "sev_snp" / "msft-milan" / "report.bin"
    assert main(["attest", "verify", "--evidence", str(report)]) == 2
    assert "--vcek is needed" in capsys.readouterr().err
    assert main(["attest", "verify", "--platform", "tdx", "--evidence", str(report)]) == 2
    assert "--collateral is needed" in capsys.readouterr().err
    assert main(["attest", "verify", "--evidence", str(tmp_path / "absent"), "--vcek", str(report)]) == 2
    assert "cannot read the evidence" in capsys.readouterr().err


def test_the_sdk_verifies_the_same_evidence() -> None:
    """``securechat.client.verify_evidence``: the programs' way to the same check, three SNP lines and TDX."""
    at = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    for name, product in [("msft-milan", "Milan"), ("msft-genoa", "Genoa"), ("anolis-turin", "Turin")]:
        folder = VECTORS / "sev_snp" / name
        evidence = snp_evidence_from_files(folder / "report.bin", folder / "vcek.der")
        assert verify_evidence(Platform.SEV_SNP, evidence, at=at).product == product
    folder = VECTORS / "tdx" / "gtg-v5-uptodate"
    quote = tdx_evidence_from_files(folder / "quote.bin", folder / "collateral.json")
    assert verify_evidence(Platform.TDX, quote, at=1772323200).tcb_status == "UpToDate"
    with pytest.raises(AttestationError) as refused:
        verify_evidence(Platform.TDX, quote, at=at)  # the collateral expired long before
    assert refused.value.reason is AttestationFailure.COLLATERAL_INVALID
