"""An emulated SEV-SNP platform for development and CI: byte-exact reports signed by a chain of its own.

It plays AMD's part: a generated ARK (RSA-4096, self-signed, RSA-PSS SHA-384) signs an ASK, the ASK signs a VCEK
(ECDSA P-384) carrying AMD's extensions (product name, TCB SPLs, hardware id), and the VCEK signs version-3
reports over the report data a worker asks for, with the chip id and TCB the VCEK names. So the production
verifier (``verify.py``) checks its evidence unchanged; only the pinned ARK differs (clients add the emulator's
``ark.der``, e.g. ``--snp-ark``). Like the simulated root, its keys sit on the worker host: it proves nothing
against whoever runs it.

The launch measurement it reports stands for the image: a SHA-384 over the worker's ``code`` register, so a
release's manifest can name it (``securechat manifest build`` computes the same).

Its files (``SnpEmulator.create``/``open``): ``vcek.key`` (0600; the only secret kept, the ARK and ASK keys are
dropped once the chain is made), ``vcek.der``, ``ask.der``, ``ark.der``.
"""

from __future__ import annotations

import hashlib
import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, NoReturn

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from securechat import state_files
from securechat.attestation.configfs_tsm import TsmReport
from securechat.attestation.sev_snp.abi import (
    CHIP_ID_BYTES,
    MEASUREMENT_BYTES,
    POLICY_DEBUG_BIT,
    REPORT_BYTES,
    REPORT_DATA_BYTES,
    SIGNATURE_COMPONENT_BYTES,
    SIGNED_BYTES,
    build_certificate_table,
)
from securechat.attestation.sev_snp.kds import OID_HWID, OID_PRODUCT_NAME, SPL_OIDS, Product
from securechat.attestation.sev_snp.verify import ProductRoots

PRODUCT: Final = Product.GENOA
TCB: Final = {"bootloader": 10, "tee": 0, "snp": 23, "microcode": 84}  # a Genoa TCB seen in the field
GENOA_CPUID: Final = (0x19, 0x11, 0x01)
POLICY: Final = 0x30000  # SMT allowed; bit 17 is reserved, must be one
VALIDITY: Final = timedelta(days=7 * 365)
_DOMAIN: Final = b"securechat-emulated-launch-v1\x00"


def emulated_launch_measurement(code_register: str) -> str:
    """The MEASUREMENT an emulated launch of the image holding this code reports (hex, 48 bytes)."""
    return hashlib.sha384(_DOMAIN + code_register.encode()).hexdigest()


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SecureChat emulated AMD-SP"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _der_ia5(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode("ascii")


def _tcb_u64(tcb: dict[str, int]) -> int:
    raw = bytes([tcb["bootloader"], tcb["tee"], 0, 0, 0, 0, tcb["snp"], tcb["microcode"]])  # Genoa's layout
    return int.from_bytes(raw, "little")


class SnpEmulator:
    """The emulated AMD-SP of one machine: its VCEK signs reports; its ARK is what clients pin."""

    def __init__(
        self,
        vcek_key: ec.EllipticCurvePrivateKey,
        vcek: x509.Certificate,
        ask: x509.Certificate,
        ark: x509.Certificate,
        chip_id: bytes,
    ) -> None:
        self._vcek_key = vcek_key
        self.vcek, self.ask, self.ark = vcek, ask, ark
        self.chip_id = chip_id

    @classmethod
    def generate(cls, *, now: datetime | None = None, rsa_bits: int = 4096) -> SnpEmulator:
        start = (now or datetime.now(UTC)) - timedelta(days=1)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        chip_id = os.urandom(CHIP_ID_BYTES)

        def issue(
            subject: str, issuer: str, key: object, signer: rsa.RSAPrivateKey, extra: list[x509.ExtensionType]
        ) -> x509.Certificate:
            builder = (
                x509.CertificateBuilder()
                .subject_name(_name(subject))
                .issuer_name(_name(issuer))
                .public_key(key)  # type: ignore[arg-type]
                .serial_number(x509.random_serial_number())
                .not_valid_before(start)
                .not_valid_after(start + VALIDITY)
            )
            for extension in extra:
                builder = builder.add_extension(extension, critical=False)
            return builder.sign(signer, hashes.SHA384(), rsa_padding=_pss())

        ark = issue("ARK-Genoa", "ARK-Genoa", ark_key.public_key(), ark_key, [])
        ask = issue("SEV-Genoa", "ARK-Genoa", ask_key.public_key(), ark_key, [])
        amd_extensions: list[x509.ExtensionType] = [
            x509.UnrecognizedExtension(OID_PRODUCT_NAME, _der_ia5(PRODUCT.value)),
            *(x509.UnrecognizedExtension(SPL_OIDS[name], _der_integer(value)) for name, value in TCB.items()),
            x509.UnrecognizedExtension(OID_HWID, chip_id),
        ]
        vcek = issue("SEV-VCEK", "SEV-Genoa", vcek_key.public_key(), ask_key, amd_extensions)
        return cls(vcek_key, vcek, ask, ark, chip_id)

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = self._vcek_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        for name, data in (("vcek.der", self.vcek), ("ask.der", self.ask), ("ark.der", self.ark)):
            state_files.write_atomically(directory / name, data.public_bytes(serialization.Encoding.DER))
        state_files.write_atomically(directory / "vcek.key", key)  # 0600, written last: its presence means done

    @classmethod
    def open(cls, directory: Path) -> SnpEmulator:
        key = serialization.load_pem_private_key((directory / "vcek.key").read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the emulator's VCEK key is not an EC key")
        vcek = x509.load_der_x509_certificate((directory / "vcek.der").read_bytes())
        hwid = vcek.extensions.get_extension_for_oid(OID_HWID).value
        if not isinstance(hwid, x509.UnrecognizedExtension):
            raise ValueError("the emulator's VCEK has no hardware id")
        return cls(
            key,
            vcek,
            x509.load_der_x509_certificate((directory / "ask.der").read_bytes()),
            x509.load_der_x509_certificate((directory / "ark.der").read_bytes()),
            hwid.value,
        )

    @classmethod
    def ensure(cls, directory: Path) -> SnpEmulator:
        """Open the emulator in ``directory``, making it first if there is none (several workers may start at
        once: one makes it, the others wait on its lock and open it)."""
        directory = directory.expanduser()
        with state_files.locked(directory / "emulator"):
            if not (directory / "vcek.key").exists():
                cls.generate().save(directory)
        return cls.open(directory)

    def roots(self) -> ProductRoots:
        """What a client pins to trust this emulator (its ARK; its ASK comes along)."""
        return ProductRoots(PRODUCT, self.ark, self.ask)

    # -- reports -------------------------------------------------------------------------------------------
    def report(self, report_data: bytes, measurement: bytes, *, debug: bool = False) -> bytes:
        """A version-3 SEV-SNP report over ``report_data``, signed by this emulator's VCEK."""
        if len(report_data) != REPORT_DATA_BYTES or len(measurement) != MEASUREMENT_BYTES:
            raise ValueError("report data is 64 bytes and the measurement 48")
        tcb = _tcb_u64(TCB)
        body = bytearray(REPORT_BYTES)
        struct.pack_into("<IIQ", body, 0x000, 3, 0, POLICY | (POLICY_DEBUG_BIT if debug else 0))
        struct.pack_into("<IIQQI", body, 0x030, 0, 1, tcb, 0, 0)  # vmpl, signature algo, current TCB, info, key
        body[0x050:0x090] = report_data
        body[0x090:0x0C0] = measurement
        body[0x140:0x160] = os.urandom(32)  # report id
        struct.pack_into("<Q", body, 0x180, tcb)  # reported TCB
        body[0x188:0x18B] = bytes(GENOA_CPUID)
        body[0x1A0:0x1E0] = self.chip_id
        struct.pack_into("<Q", body, 0x1E0, tcb)  # committed TCB
        struct.pack_into("<Q", body, 0x1F0, tcb)  # launch TCB
        signature = self._vcek_key.sign(bytes(body[:SIGNED_BYTES]), ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(signature)
        body[0x2A0 : 0x2A0 + SIGNATURE_COMPONENT_BYTES] = r.to_bytes(SIGNATURE_COMPONENT_BYTES, "little")
        body[0x2E8 : 0x2E8 + SIGNATURE_COMPONENT_BYTES] = s.to_bytes(SIGNATURE_COMPONENT_BYTES, "little")
        return bytes(body)

    def __reduce__(self) -> NoReturn:
        raise TypeError("the emulator's keys never leave the process")


class EmulatedTsm:
    """A ``ReportCollector`` over the emulator, shaped like configfs-tsm: the report and a certificate table
    holding the VCEK and ASK (as a host that provides them to its guests does)."""

    def __init__(self, emulator: SnpEmulator, measurement: str, *, debug: bool = False) -> None:
        self._emulator = emulator
        self._measurement = bytes.fromhex(measurement)
        self._debug = debug

    def report(self, inblob: bytes) -> TsmReport:
        table = build_certificate_table(
            {
                "vcek": self._emulator.vcek.public_bytes(serialization.Encoding.DER),
                "ask": self._emulator.ask.public_bytes(serialization.Encoding.DER),
            }
        )
        return TsmReport("sev_guest", self._emulator.report(inblob, self._measurement, debug=self._debug), table)
