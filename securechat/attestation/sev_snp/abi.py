"""The SEV-SNP attestation report as bytes: parse it and nothing else (no signature is checked here).

AMD SEV-SNP ABI specification (publication 56860), table "ATTESTATION_REPORT Structure": 1,184 bytes, little
endian. The fields used here::

    0x000 version u32 (2..5 occur in the wild)     0x048 key info u32 (bits 4:2 signing key: 0 VCEK, 1 VLEK)
    0x004 guest_svn u32                            0x050 report_data [64]
    0x008 policy u64 (bit 19 DEBUG)                0x090 measurement [48] (the launch digest)
    0x034 signature_algo u32 (1 = ECDSA P-384)     0x0C0 host_data [32]
    0x038 current_tcb u64                          0x180 reported_tcb u64 (the TCB the VCEK is derived for)
    0x040 platform_info u64                        0x188 cpuid family, model, stepping (version 3 and later)
    0x1A0 chip_id [64]                             0x2A0 signature: r [72] then s [72], little endian

The signature covers bytes 0x000-0x29F.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Final

REPORT_BYTES: Final = 1184
SIGNED_BYTES: Final = 0x2A0
SUPPORTED_VERSIONS: Final = frozenset({2, 3, 4, 5})
REPORT_DATA_BYTES: Final = 64
MEASUREMENT_BYTES: Final = 48
CHIP_ID_BYTES: Final = 64
SIGNATURE_COMPONENT_BYTES: Final = 72  # r and s are each zero-extended to 72 bytes
ECDSA_P384_SHA384: Final = 1
POLICY_DEBUG_BIT: Final = 1 << 19
SIGNING_KEY_VCEK: Final = 0
SIGNING_KEY_VLEK: Final = 1


class MalformedReport(ValueError):
    """Not an SEV-SNP report this verifier reads (size, version, algorithm or reserved bits)."""


@dataclass(frozen=True, slots=True)
class SnpReport:
    version: int
    guest_svn: int
    policy: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signing_key: int  # SIGNING_KEY_VCEK or SIGNING_KEY_VLEK
    report_data: bytes
    measurement: bytes
    host_data: bytes
    reported_tcb: int
    chip_id: bytes
    cpuid: tuple[int, int, int] | None  # family, model, stepping (version 3 and later)
    signed: bytes = field(repr=False)  # bytes 0x000-0x29F
    r: int = field(repr=False)
    s: int = field(repr=False)

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG_BIT)


def parse_report(data: bytes) -> SnpReport:
    if len(data) != REPORT_BYTES:
        raise MalformedReport("an SEV-SNP report is 1,184 bytes")
    (version, guest_svn, policy) = struct.unpack_from("<IIQ", data, 0x000)
    if version not in SUPPORTED_VERSIONS:
        raise MalformedReport("unsupported SEV-SNP report version")
    (signature_algo,) = struct.unpack_from("<I", data, 0x034)
    if signature_algo != ECDSA_P384_SHA384:
        raise MalformedReport("unsupported SEV-SNP signature algorithm")
    (current_tcb, platform_info) = struct.unpack_from("<QQ", data, 0x038)
    (key_info,) = struct.unpack_from("<I", data, 0x048)
    signing_key = (key_info >> 2) & 0b111
    if signing_key not in (SIGNING_KEY_VCEK, SIGNING_KEY_VLEK):
        raise MalformedReport("unsupported SEV-SNP signing key")
    (reported_tcb,) = struct.unpack_from("<Q", data, 0x180)
    cpuid = tuple(data[0x188:0x18B]) if version >= 3 else None
    r_bytes = data[0x2A0 : 0x2A0 + SIGNATURE_COMPONENT_BYTES]
    s_bytes = data[0x2E8 : 0x2E8 + SIGNATURE_COMPONENT_BYTES]
    return SnpReport(
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        signature_algo=signature_algo,
        current_tcb=current_tcb,
        platform_info=platform_info,
        signing_key=signing_key,
        report_data=data[0x050 : 0x050 + REPORT_DATA_BYTES],
        measurement=data[0x090 : 0x090 + MEASUREMENT_BYTES],
        host_data=data[0x0C0:0x0E0],
        reported_tcb=reported_tcb,
        chip_id=data[0x1A0 : 0x1A0 + CHIP_ID_BYTES],
        cpuid=(cpuid[0], cpuid[1], cpuid[2]) if cpuid is not None else None,
        signed=data[:SIGNED_BYTES],
        r=int.from_bytes(r_bytes, "little"),
        s=int.from_bytes(s_bytes, "little"),
    )


# The certificate table the kernel returns beside a report (configfs-tsm ``auxblob``, the GHCB extended guest
# request): entries of (GUID, offset u32, length u32), ended by an all-zero entry, offsets from the table's start.
CERTIFICATE_GUIDS: Final = {
    "63da758d-e664-4564-adc5-f4b93be8accd": "vcek",
    "a8074bc2-a25a-483e-aae6-39c045a0b8a1": "vlek",
    "4ab7b379-bbac-4fe4-a02f-05aef327c782": "ask",
    "c0b406a4-a803-4952-9743-3fb6014cd0ae": "ark",
}
_TABLE_ENTRY = struct.Struct("<16sII")
MAX_TABLE_ENTRIES: Final = 16


def parse_certificate_table(table: bytes) -> dict[str, bytes]:
    """The certificates of a certificate table, by role ("vcek", "vlek", "ask", "ark"); unknown GUIDs skipped."""

    found: dict[str, bytes] = {}
    for index in range(MAX_TABLE_ENTRIES):
        start = index * _TABLE_ENTRY.size
        if start + _TABLE_ENTRY.size > len(table):
            raise MalformedReport("certificate table without its end entry")
        guid, offset, length = _TABLE_ENTRY.unpack_from(table, start)
        if guid == bytes(16):
            return found
        if offset + length > len(table):
            raise MalformedReport("certificate table entry out of bounds")
        role = CERTIFICATE_GUIDS.get(str(uuid.UUID(bytes_le=guid)))
        if role is not None:
            found[role] = table[offset : offset + length]
    raise MalformedReport("certificate table too long")


def build_certificate_table(certificates: dict[str, bytes]) -> bytes:
    """A certificate table holding ``certificates`` by role (the emulated platform's auxblob)."""

    guid_of = {role: guid for guid, role in CERTIFICATE_GUIDS.items()}
    header_bytes = (len(certificates) + 1) * _TABLE_ENTRY.size
    entries, blobs, offset = b"", b"", header_bytes
    for role, der in certificates.items():
        entries += _TABLE_ENTRY.pack(uuid.UUID(guid_of[role]).bytes_le, offset, len(der))
        blobs += der
        offset += len(der)
    return entries + bytes(_TABLE_ENTRY.size) + blobs
