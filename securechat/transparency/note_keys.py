"""Ed25519 note keys: the log's checkpoint signatures (type 0x01) and witness cosignatures (type 0x04).

A key is named and identified as the signed-note spec says: key id = SHA-256(name || 0x0A || type || public
key)[:4], and a verifier key ("vkey") is written ``<name>+<8 hex key id>+<base64(type || public key)>``, the
form Go's ``sumdb/note`` and the C2SP witness ecosystem use, so operators can pin keys by copying one line.

Cosignatures follow https://c2sp.org/tlog-cosignature (Ed25519, v1): the signature bytes are an 8-byte
big-endian timestamp followed by the Ed25519 signature over ``cosignature/v1\\ntime <t>\\n`` + the note text.
The timestamp is part of what is signed, so a cosignature cannot be re-dated.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.transparency.note import InvalidNote, Note, NoteSignature, is_valid_key_name, strict_b64decode

ED25519_PUBLIC_BYTES: Final = 32
ED25519_SIGNATURE_BYTES: Final = 64
TIMESTAMP_BYTES: Final = 8

_KEY_ID_HEX: Final = re.compile(r"^[0-9a-f]{8}$")


class SignatureType(IntEnum):
    """Signature type bytes assigned by the signed-note spec (only the two this project uses)."""

    ED25519 = 0x01  # plain Ed25519 over the note text: what a log signs its checkpoints with
    COSIGNATURE_V1 = 0x04  # timestamped Ed25519 witness cosignature


_TYPES: Final = frozenset(int(member) for member in SignatureType)


def key_id(name: str, signature_type: SignatureType, public_key: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key).digest()
    return int(struct.unpack(">I", digest[:4])[0])


def cosignature_message(text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + text.encode()


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A pinned public key: who (name), how (type) and what (the 32-byte Ed25519 key)."""

    name: str
    signature_type: SignatureType
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name) or len(self.public_key) != ED25519_PUBLIC_BYTES:
            raise InvalidNote()

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.signature_type, self.public_key)

    def to_vkey(self) -> str:
        encoded = base64.b64encode(bytes([self.signature_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        # Names cannot contain '+', base64 can: split off exactly two fields from the left.
        parts = vkey.split("+", 2)
        if len(parts) != 3 or not _KEY_ID_HEX.match(parts[1]):
            raise InvalidNote()
        name, claimed_id, encoded = parts
        blob = strict_b64decode(encoded)
        if len(blob) != 1 + ED25519_PUBLIC_BYTES or blob[0] not in _TYPES:
            raise InvalidNote()
        verifier = cls(name, SignatureType(blob[0]), blob[1:])
        if verifier.key_id != int(claimed_id, 16):
            raise InvalidNote()
        return verifier

    @classmethod
    def for_key(cls, name: str, signature_type: SignatureType, key: ed25519.Ed25519PublicKey) -> NoteVerifier:
        return cls(name, signature_type, key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def matches(self, signature: NoteSignature) -> bool:
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, text: str, signature: NoteSignature) -> bool:
        """Whether ``signature`` (which must name this key) is a valid signature of ``text``."""
        if not self.matches(signature):
            return False
        blob = signature.signature
        if self.signature_type is SignatureType.COSIGNATURE_V1:
            if len(blob) != TIMESTAMP_BYTES + ED25519_SIGNATURE_BYTES:
                return False
            timestamp = cosignature_timestamp(signature)
            message, raw = cosignature_message(text, timestamp), blob[TIMESTAMP_BYTES:]
        else:
            if len(blob) != ED25519_SIGNATURE_BYTES:
                return False
            message, raw = text.encode(), blob
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(self.public_key).verify(raw, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class NoteSigner:
    """A private key with its note name and type. Holds the key; has no accessor for it."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, signature_type: SignatureType, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key
        self.verifier = NoteVerifier.for_key(name, signature_type, key.public_key())

    @property
    def name(self) -> str:
        return self.verifier.name

    def sign(self, text: str, *, timestamp: int | None = None) -> NoteSignature:
        """Sign ``text``; ``timestamp`` (POSIX seconds, default now) applies to cosignatures only."""
        if self.verifier.signature_type is SignatureType.COSIGNATURE_V1:
            when = int(time.time()) if timestamp is None else timestamp
            if not 0 <= when < 2**63:
                raise ValueError("cosignature timestamp out of range")
            blob = struct.pack(">Q", when) + self._key.sign(cosignature_message(text, when))
        else:
            blob = self._key.sign(text.encode())
        return NoteSignature(self.verifier.name, self.verifier.key_id, blob)

    def __repr__(self) -> str:
        return f"NoteSigner({self.verifier.to_vkey()})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("note signing keys are not pickled")


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The POSIX time a v1 cosignature claims; InvalidNote if the signature is too short to be one."""
    if len(signature.signature) != TIMESTAMP_BYTES + ED25519_SIGNATURE_BYTES:
        raise InvalidNote()
    (timestamp,) = struct.unpack(">Q", signature.signature[:TIMESTAMP_BYTES])
    if timestamp >= 2**63:
        raise InvalidNote()
    return int(timestamp)


def verified_keys(note: Note, verifiers: Iterable[NoteVerifier]) -> tuple[NoteVerifier, ...]:
    """The given keys that signed ``note``, each once.

    As the spec says: signatures by other keys are ignored, even ones that share a name or a key id (but not
    both) with a known key; a signature by a known key that does not verify rejects the whole note
    (``InvalidNote``), because a known key's bad signature means tampering, not a key we do not know.
    """
    known = list(verifiers)
    found: dict[tuple[str, int, bytes], NoteVerifier] = {}
    for signature in note.signatures:
        matching = [verifier for verifier in known if verifier.matches(signature)]
        if not matching:
            continue
        valid = next((verifier for verifier in matching if verifier.verify(note.text, signature)), None)
        if valid is None:
            raise InvalidNote()
        found[(valid.name, valid.key_id, valid.public_key)] = valid
    return tuple(found.values())
