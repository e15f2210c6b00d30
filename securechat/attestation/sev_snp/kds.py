"""What AMD's Key Distribution Service puts in its certificates, and how a TCB version is laid out per product.

VCEK and VLEK certificates carry AMD extensions under 1.3.6.1.4.1.3704.1 (AMD "VCEK Certificate and KDS Interface
Specification", publication 57230)::

    .1 struct version (INTEGER)   .2 product name (IA5String: "Milan", "Genoa", "Turin", maybe "-B0" etc.)
    .3.1 boot loader SPL  .3.2 TEE SPL  .3.3 SNP SPL  .3.8 microcode SPL  .3.9 FMC SPL (Turin)  (INTEGERs)
    .4 hardware id: the chip id, raw bytes (64; Turin: 8), VCEK only  .5 CSP id (VLEK only)

A TCB version is 8 bytes (a little-endian u64 in the report), laid out per product::

    Milan, Genoa:  [0] boot loader  [1] TEE  [2..5] reserved  [6] SNP  [7] microcode
    Turin:         [0] FMC  [1] boot loader  [2] TEE  [3] SNP  [4..6] reserved  [7] microcode
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from cryptography import x509

OID_PREFIX: Final = "1.3.6.1.4.1.3704.1"
OID_PRODUCT_NAME: Final = x509.ObjectIdentifier(f"{OID_PREFIX}.2")
OID_HWID: Final = x509.ObjectIdentifier(f"{OID_PREFIX}.4")
SPL_OIDS: Final = {
    "bootloader": x509.ObjectIdentifier(f"{OID_PREFIX}.3.1"),
    "tee": x509.ObjectIdentifier(f"{OID_PREFIX}.3.2"),
    "snp": x509.ObjectIdentifier(f"{OID_PREFIX}.3.3"),
    "microcode": x509.ObjectIdentifier(f"{OID_PREFIX}.3.8"),
    "fmc": x509.ObjectIdentifier(f"{OID_PREFIX}.3.9"),
}
TURIN_HWID_BYTES: Final = 8


class Product(StrEnum):
    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @property
    def tcb_fields(self) -> tuple[str, ...]:
        if self is Product.TURIN:
            return ("fmc", "bootloader", "tee", "snp", "microcode")
        return ("bootloader", "tee", "snp", "microcode")


def product_of_cpuid(family: int, model: int) -> Product | None:
    """The processor line a version-3+ report's CPUID names (AMD's family 19h: Milan models 00h-0Fh, Genoa
    10h-1Fh and A0h-AFh; family 1Ah: Turin models 00h-1Fh), or None for one this module does not know."""
    if family == 0x19 and model <= 0x0F:
        return Product.MILAN
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return Product.GENOA
    if family == 0x1A and model <= 0x1F:
        return Product.TURIN
    return None


class MalformedCertificate(ValueError):
    """An AMD certificate without the extensions a VCEK or VLEK carries, or with values that do not parse."""


def tcb_of(value: int, product: Product) -> dict[str, int]:
    """The TCB components of a report's TCB version (a u64 read little-endian), for ``product``'s layout."""
    raw = value.to_bytes(8, "little")
    if product is Product.TURIN:
        return {"fmc": raw[0], "bootloader": raw[1], "tee": raw[2], "snp": raw[3], "microcode": raw[7]}
    return {"bootloader": raw[0], "tee": raw[1], "snp": raw[6], "microcode": raw[7]}


@dataclass(frozen=True, slots=True)
class KeyCertificateInfo:
    """The AMD extensions of a VCEK or VLEK certificate."""

    product_name: str
    tcb: dict[str, int]  # the SPLs the key was derived for, by name
    hwid: bytes | None  # VCEK: the chip id it belongs to; VLEK: none

    def product(self) -> Product | None:
        base = self.product_name.split("-", 1)[0]
        return Product(base) if base in Product.__members__.values() else None


def read_key_certificate(certificate: x509.Certificate) -> KeyCertificateInfo:
    extensions = {ext.oid: ext.value for ext in certificate.extensions}

    def raw(oid: x509.ObjectIdentifier) -> bytes | None:
        value = extensions.get(oid)
        if value is None:
            return None
        if not isinstance(value, x509.UnrecognizedExtension):
            raise MalformedCertificate("unexpected AMD extension type")
        return value.value

    name = raw(OID_PRODUCT_NAME)
    if name is None:
        raise MalformedCertificate("no product name")
    tcb = {}
    for field_name, oid in SPL_OIDS.items():
        encoded = raw(oid)
        if encoded is not None:
            tcb[field_name] = _der_integer(encoded)
    if not {"bootloader", "tee", "snp", "microcode"} <= set(tcb):
        raise MalformedCertificate("missing TCB extensions")
    return KeyCertificateInfo(_der_ia5_string(name), tcb, raw(OID_HWID))


def _der_value(encoded: bytes, tag: int) -> bytes:
    """The content of one DER TLV with ``tag`` (short or long form length), the whole input and nothing else."""
    if len(encoded) < 2 or encoded[0] != tag:
        raise MalformedCertificate("unexpected DER tag")
    length, offset = encoded[1], 2
    if length & 0x80:
        num_bytes = length & 0x7F
        if not 0 < num_bytes <= 2 or len(encoded) < 2 + num_bytes:
            raise MalformedCertificate("unsupported DER length")
        length, offset = int.from_bytes(encoded[2 : 2 + num_bytes], "big"), 2 + num_bytes
    if len(encoded) != offset + length:
        raise MalformedCertificate("DER length does not match")
    return encoded[offset:]


def _der_integer(encoded: bytes) -> int:
    content = _der_value(encoded, 0x02)
    if not content or len(content) > 9:
        raise MalformedCertificate("unexpected SPL integer")
    value = int.from_bytes(content, "big", signed=True)
    if not 0 <= value <= 0xFF:
        raise MalformedCertificate("an SPL is one byte")
    return value


def _der_ia5_string(encoded: bytes) -> str:
    content = _der_value(encoded, 0x16)
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedCertificate("product name is not ASCII") from None
    if not 0 < len(text) <= 32 or not text.replace("-", "").isalnum():
        raise MalformedCertificate("unexpected product name")
    return text
