"""Worker key pairs (made in memory, never exported) and the public keys that senders seal to.

A worker holds one key pair per suite. Its public half travels as a ``RecipientKey``: suite, key id and the
SubjectPublicKeyInfo DER. ``key_id`` is the SHA-256 of that DER, so a key id names exactly one public key.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NoReturn

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519

RSA_KEY_BITS = 3072
KEY_ID_HEX_CHARS = 32  # 128 bits of SHA-256: collision-safe for key directories


class Suite(StrEnum):
    """How the per-request data key (DEK) is wrapped for a worker; the body is always AES-256-GCM."""

    HPKE_X25519 = "hpke-x25519-hkdf-sha256-aes256gcm"  # RFC 9180 base mode
    RSA_OAEP = "rsa3072-oaep-sha256-aes256gcm"  # the prototype's hybrid scheme


PublicKey = x25519.X25519PublicKey | rsa.RSAPublicKey
PrivateKey = x25519.X25519PrivateKey | rsa.RSAPrivateKey


def _spki_der(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_for(public_key_der: bytes) -> str:
    return hashlib.sha256(public_key_der).hexdigest()[:KEY_ID_HEX_CHARS]


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A worker's public key for one suite, as published in replica metadata and attestation documents."""

    suite: Suite
    key_id: str
    public_key_der: bytes

    @classmethod
    def from_public_key(cls, suite: Suite, public_key: PublicKey) -> RecipientKey:
        der = _spki_der(public_key)
        return cls(suite=suite, key_id=key_id_for(der), public_key_der=der)

    def load(self) -> PublicKey:
        """The key object, after checking it matches its suite and its id (a substituted key is refused)."""
        if key_id_for(self.public_key_der) != self.key_id:
            raise ValueError("key id does not match public key")
        key = serialization.load_der_public_key(self.public_key_der)
        if self.suite is Suite.HPKE_X25519 and isinstance(key, x25519.X25519PublicKey):
            return key
        if self.suite is Suite.RSA_OAEP and isinstance(key, rsa.RSAPublicKey) and key.key_size >= RSA_KEY_BITS:
            return key
        raise ValueError("public key does not fit its suite")

    def to_dict(self) -> dict[str, str]:
        return {
            "suite": self.suite.value,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key_der).decode(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecipientKey:
        key = cls(
            suite=Suite(data["suite"]),
            key_id=str(data["key_id"]),
            public_key_der=base64.b64decode(data["public_key"], validate=True),
        )
        key.load()
        return key


class WorkerKeys:
    """One in-memory key pair per suite. Private halves have no accessor, no repr and refuse pickling,
    so they cannot be returned through Ray, logged or written to disk by accident."""

    __slots__ = ("_private", "_public")

    def __init__(self, private_keys: dict[Suite, PrivateKey]) -> None:
        self._private = dict(private_keys)
        self._public = {
            suite: RecipientKey.from_public_key(suite, key.public_key()) for suite, key in self._private.items()
        }

    @classmethod
    def generate(cls, suites: tuple[Suite, ...] = (Suite.HPKE_X25519, Suite.RSA_OAEP)) -> WorkerKeys:
        keys: dict[Suite, PrivateKey] = {}
        for suite in suites:
            if suite is Suite.HPKE_X25519:
                keys[suite] = x25519.X25519PrivateKey.generate()
            else:
                keys[suite] = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        return cls(keys)

    @property
    def public_keys(self) -> tuple[RecipientKey, ...]:
        return tuple(self._public.values())

    def public_key(self, suite: Suite) -> RecipientKey:
        return self._public[suite]

    def key_ids(self) -> frozenset[str]:
        return frozenset(key.key_id for key in self._public.values())

    def private_key_for(self, key_id: str) -> tuple[Suite, PrivateKey] | None:
        """For the envelope opener inside this worker only."""
        for suite, public in self._public.items():
            if public.key_id == key_id:
                return suite, self._private[suite]
        return None

    def __repr__(self) -> str:
        return f"WorkerKeys(key_ids={sorted(self.key_ids())})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("worker private keys never leave the process")
