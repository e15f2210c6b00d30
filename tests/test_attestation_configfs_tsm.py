"""The worker's report collector against a fake configfs-tsm: a real directory whose attributes behave as the
kernel's do (generation counts inblob writes, outblob is made on read, provider names the firmware)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from securechat.attestation import Platform
from securechat.attestation.configfs_tsm import ConfigfsTsm, TsmError
from securechat.attestation.sev_snp.emulator import EmulatedTsm, SnpEmulator, emulated_launch_measurement
from securechat.attestation.sev_snp.source import SnpSource
from securechat.attestation.sev_snp.verify import SnpVerifier, pinned_roots
from securechat.attestation.tdx import TdxSource

TDX_VECTOR = Path(__file__).parent / "vectors" / "tdx" / "phala-v4-uptodate"


class FakeConfigfs:
    """``TsmFiles`` over a real directory: a report request's files are created on mkdir, ``generation`` moves
    with every inblob write, ``outblob`` is produced when read (from what inblob holds), ``rmdir`` removes it."""

    def __init__(self, root: Path, provider: str, make: Callable[[bytes], tuple[bytes, bytes]]) -> None:
        self.root = root
        self.provider = provider
        self.make = make
        self.requests: list[Path] = []
        self.between_write_and_read: Callable[[Path], None] | None = None  # another writer, for the race test
        root.mkdir(parents=True)

    def mkdir(self, path: Path) -> None:
        path.mkdir()
        (path / "generation").write_text("0\n")
        (path / "provider").write_text(self.provider + "\n")
        self.requests.append(path)

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()

    def write(self, path: Path, data: bytes) -> None:
        path.write_bytes(data)
        if path.name == "inblob":
            generation = path.parent / "generation"
            generation.write_text(f"{int(generation.read_text()) + 1}\n")
            if self.between_write_and_read is not None:
                self.between_write_and_read(path.parent)

    def read(self, path: Path) -> bytes:
        if path.name in ("outblob", "auxblob"):
            outblob, auxblob = self.make((path.parent / "inblob").read_bytes())
            (path.parent / "outblob").write_bytes(outblob)
            (path.parent / "auxblob").write_bytes(auxblob)
        return path.read_bytes()

    def exists(self, path: Path) -> bool:
        return path.exists() or (path.name == "auxblob" and path.parent.exists())


@pytest.fixture(scope="module")
def emulator() -> SnpEmulator:
    return SnpEmulator.generate(rsa_bits=2048)


def snp_firmware(emulator: SnpEmulator) -> Callable[[bytes], tuple[bytes, bytes]]:
    emulated = EmulatedTsm(emulator, emulated_launch_measurement("ab" * 32))

    def make(inblob: bytes) -> tuple[bytes, bytes]:
        report = emulated.report(inblob)
        return report.outblob, report.auxblob

    return make


def test_an_snp_worker_gets_a_fresh_report_over_its_report_data_and_cleans_up(
    tmp_path: Path, emulator: SnpEmulator
) -> None:
    fake = FakeConfigfs(tmp_path / "tsm" / "report", "sev_guest", snp_firmware(emulator))
    source = SnpSource(ConfigfsTsm(fake.root, fake))
    evidence = source.evidence(b"\x11" * 64)
    claims = SnpVerifier([*pinned_roots(), emulator.roots()]).verify(evidence, datetime.now(UTC).timestamp())
    assert claims.platform is Platform.SEV_SNP and claims.report_data == b"\x11" * 64
    assert "intermediate" in evidence  # the ASK came in the host's certificate table
    second = source.evidence(b"\x22" * 64)
    assert base64.b64decode(second["report"]) != base64.b64decode(evidence["report"])  # one report per request
    assert len(fake.requests) == 2 and list(fake.root.iterdir()) == []  # every request directory removed


def test_a_request_raced_by_another_writer_is_refused(tmp_path: Path, emulator: SnpEmulator) -> None:
    fake = FakeConfigfs(tmp_path / "report", "sev_guest", snp_firmware(emulator))

    def another_writer(entry: Path) -> None:
        fake.between_write_and_read = None  # the other writer writes once, then we read
        fake.write(entry / "inblob", b"\x00" * 64)  # someone else's report data lands before our read

    fake.between_write_and_read = another_writer
    with pytest.raises(TsmError, match="another writer"):
        ConfigfsTsm(fake.root, fake).report(b"\x33" * 64)
    assert list(fake.root.iterdir()) == []


def test_missing_interface_wrong_firmware_and_missing_vcek_are_named(tmp_path: Path, emulator: SnpEmulator) -> None:
    with pytest.raises(TsmError, match="cannot create"):
        ConfigfsTsm(tmp_path / "absent").report(b"\x00" * 64)
    tdx_firmware = FakeConfigfs(tmp_path / "tdx", "tdx_guest", lambda inblob: (b"quote", b""))
    with pytest.raises(TsmError, match="expected an SEV-SNP report"):
        SnpSource(ConfigfsTsm(tdx_firmware.root, tdx_firmware)).evidence(b"\x00" * 64)
    bare = FakeConfigfs(tmp_path / "bare", "sev_guest", lambda inblob: (snp_firmware(emulator)(inblob)[0], b""))
    with pytest.raises(TsmError, match="no VCEK"):
        SnpSource(ConfigfsTsm(bare.root, bare)).evidence(b"\x00" * 64)
    # The operator's VCEK file stands in for a host that hands none over.
    vcek = emulator.vcek.public_bytes(serialization.Encoding.DER)
    evidence = SnpSource(ConfigfsTsm(bare.root, bare), vcek).evidence(b"\x44" * 64)
    assert base64.b64decode(evidence["certificate"]) == vcek and "intermediate" not in evidence


def test_a_tdx_worker_sends_its_quote_with_the_operators_collateral(tmp_path: Path) -> None:
    quote = (TDX_VECTOR / "quote.bin").read_bytes()
    fake = FakeConfigfs(tmp_path / "report", "tdx_guest", lambda inblob: (quote, b""))
    evidence = TdxSource(ConfigfsTsm(fake.root, fake), TDX_VECTOR / "collateral.json").evidence(b"\x55" * 64)
    assert base64.b64decode(evidence["quote"]) == quote
    assert evidence["collateral"] == json.loads((TDX_VECTOR / "collateral.json").read_text())
    with pytest.raises(TsmError, match="collateral"):
        TdxSource(ConfigfsTsm(fake.root, fake), tmp_path / "missing.json").evidence(b"\x55" * 64)


def test_concurrent_requests_each_get_their_own_entry(tmp_path: Path, emulator: SnpEmulator) -> None:
    fake = FakeConfigfs(tmp_path / "report", "sev_guest", snp_firmware(emulator))
    collector = ConfigfsTsm(fake.root, fake)
    results: list[bytes] = []

    def ask(index: int) -> None:
        results.append(collector.report(bytes([index]) * 64).outblob[0x50:0x90])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [bytes([i]) * 64 for i in range(4)]
