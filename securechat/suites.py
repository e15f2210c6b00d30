"""Wrap suites: how a per-request data key (DEK) is sealed to one worker key, one entry per suite.

Each suite says how a worker makes its key pair, how the public half is encoded (and checked on the way in),
and how a DEK is wrapped and unwrapped. The body is always AES-256-GCM under the DEK (securechat.envelope).

- ``hpke-mlkem768x25519-hkdf-sha256-aes256gcm`` (the default): HPKE base mode (RFC 9180) with the hybrid KEM
  MLKEM768-X25519 (KEM id 0x647a, X-Wing, draft-ietf-hpke-pq), HKDF-SHA256, AES-256-GCM. Secure while either
  ML-KEM-768 or X25519 holds, so traffic recorded today stays sealed against a future quantum computer. The
  public key is the KEM's own encoding (ML-KEM-768 encapsulation key || X25519 key, 1,216 bytes); the private
  key is a 32-byte seed expanded with SHAKE256 as the draft specifies, which is what the known-answer tests
  feed through ``hybrid_private_key``.
- ``hpke-x25519-hkdf-sha256-aes256gcm``: HPKE base mode with X25519 (classical; a compatibility setting).
- ``rsa3072-oaep-sha256-aes256gcm``: the prototype's RSA-OAEP-SHA256 (classical; a compatibility setting).

X25519 and RSA public keys are SubjectPublicKeyInfo DER, as before, so their key ids did not change.
"""

from __future__ import annotations

import hashlib
import os
from enum import StrEnum
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, padding, rsa, x25519

RSA_KEY_BITS: Final = 3072
HYBRID_SEED_BYTES: Final = 32
MLKEM768_PUBLIC_BYTES: Final = 1184
X25519_PUBLIC_BYTES: Final = 32
HYBRID_PUBLIC_BYTES: Final = MLKEM768_PUBLIC_BYTES + X25519_PUBLIC_BYTES


class Suite(StrEnum):
    """How the DEK is wrapped for a worker key; the body is always AES-256-GCM."""

    HPKE_MLKEM768_X25519 = "hpke-mlkem768x25519-hkdf-sha256-aes256gcm"  # post-quantum hybrid, the default
    HPKE_X25519 = "hpke-x25519-hkdf-sha256-aes256gcm"  # RFC 9180 base mode, classical
    RSA_OAEP = "rsa3072-oaep-sha256-aes256gcm"  # the prototype's hybrid scheme, classical

    @property
    def post_quantum(self) -> bool:
        return self is Suite.HPKE_MLKEM768_X25519


DEFAULT_SUITES: Final = (Suite.HPKE_MLKEM768_X25519,)

PublicKey = hpke.MLKEM768X25519PublicKey | x25519.X25519PublicKey | rsa.RSAPublicKey
PrivateKey = hpke.MLKEM768X25519PrivateKey | x25519.X25519PrivateKey | rsa.RSAPrivateKey

_HPKE: Final = {
    Suite.HPKE_MLKEM768_X25519: hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
    Suite.HPKE_X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
}


def hybrid_private_key(seed: bytes) -> tuple[hpke.MLKEM768X25519PrivateKey, bytes]:
    """The MLKEM768-X25519 key pair of a 32-byte seed and its public encoding.

    SHAKE256(seed) gives 96 bytes: the ML-KEM-768 seed (d || z, 64 bytes) and the X25519 private key (32).
    """
    if len(seed) != HYBRID_SEED_BYTES:
        raise ValueError("a hybrid key seed is 32 bytes")
    expanded = hashlib.shake_256(seed).digest(96)
    mlkem_key = mlkem.MLKEM768PrivateKey.from_seed_bytes(expanded[:64])
    x25519_key = x25519.X25519PrivateKey.from_private_bytes(expanded[64:])
    public = mlkem_key.public_key().public_bytes_raw() + x25519_key.public_key().public_bytes_raw()
    return hpke.MLKEM768X25519PrivateKey(mlkem_key, x25519_key), public


def generate_key_pair(suite: Suite) -> tuple[PrivateKey, bytes]:
    """A fresh key pair for ``suite``: the private key object and the encoded public key."""
    if suite is Suite.HPKE_MLKEM768_X25519:
        return hybrid_private_key(os.urandom(HYBRID_SEED_BYTES))
    if suite is Suite.HPKE_X25519:
        return classical_key_pair(x25519.X25519PrivateKey.generate())
    return classical_key_pair(rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS))


def classical_key_pair(
    private_key: x25519.X25519PrivateKey | rsa.RSAPrivateKey,
) -> tuple[x25519.X25519PrivateKey | rsa.RSAPrivateKey, bytes]:
    """An X25519 or RSA private key with its public encoding (SubjectPublicKeyInfo DER)."""
    return private_key, spki_der(private_key.public_key())


def spki_der(public_key: x25519.X25519PublicKey | rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(suite: Suite, encoded: bytes) -> PublicKey:
    """The public key of ``suite`` from its encoding; ValueError when it does not parse or fit the suite."""
    try:
        key = _parse_public_key(suite, encoded)
    except (ValueError, UnsupportedAlgorithm):
        key = None
    if key is None or suite_of(key) is not suite:
        raise ValueError("public key does not fit its suite")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < RSA_KEY_BITS:
        raise ValueError("public key does not fit its suite")
    return key


def _parse_public_key(suite: Suite, encoded: bytes) -> PublicKey | None:
    if suite is not Suite.HPKE_MLKEM768_X25519:
        key = serialization.load_der_public_key(encoded)
        return key if isinstance(key, x25519.X25519PublicKey | rsa.RSAPublicKey) else None
    if len(encoded) != HYBRID_PUBLIC_BYTES:
        return None
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(encoded[:MLKEM768_PUBLIC_BYTES]),
        x25519.X25519PublicKey.from_public_bytes(encoded[MLKEM768_PUBLIC_BYTES:]),
    )


def wrap(suite: Suite, public_key: PublicKey, dek: bytes, context: bytes) -> bytes:
    """Seal ``dek`` to ``public_key``; ``context`` (HPKE info, OAEP label) binds where the wrap may be used."""
    if suite_of(public_key) is not suite:
        raise ValueError("public key does not fit its suite")
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key.encrypt(dek, _oaep(context))
    return _HPKE[suite].encrypt(dek, public_key, info=context)


def unwrap(suite: Suite, private_key: PrivateKey, wrapped: bytes, context: bytes) -> bytes:
    """Open a wrap made by ``wrap``. Raises ValueError or InvalidTag on any failure (callers make them one)."""
    if suite_of(private_key) is not suite:
        raise ValueError("private key does not fit its suite")
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.decrypt(wrapped, _oaep(context))
    return _HPKE[suite].decrypt(wrapped, private_key, info=context)


def suite_of(key: PublicKey | PrivateKey) -> Suite | None:
    """The suite a key object belongs to, by its type: a key is never used under a suite it was not made for."""
    if isinstance(key, hpke.MLKEM768X25519PublicKey | hpke.MLKEM768X25519PrivateKey):
        return Suite.HPKE_MLKEM768_X25519
    if isinstance(key, x25519.X25519PublicKey | x25519.X25519PrivateKey):
        return Suite.HPKE_X25519
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return Suite.RSA_OAEP
    return None


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)
