"""Sealed request envelopes: AES-256-GCM body under a per-request data key (DEK), DEK wrapped per worker key.

Layout (JSON on the wire, every binary field base64)::

    header      canonical JSON bytes; the body's AAD (version, suite, request_id, tenant_id, mode, region, key_ids)
    keys        {key_id: wrapped DEK}; wrap context = key_id + SHA-256(header), so a wrapped key cannot be moved
    nonce       12 random bytes
    ciphertext  AES-256-GCM(DEK, nonce, body, aad=header)

The sealer need not know which replica will be chosen: it wraps the DEK for every verified worker key of one
suite. Opening authenticates everything before any plaintext is returned; every failure is InvalidCiphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hpke as _hpke
from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securechat.errors import InvalidCiphertext
from securechat.keys import RecipientKey, Suite, WorkerKeys

# The protocol version, envelope and response stream together (securechat.stream); a worker refuses any other.
# 2: response frames of one fixed, padded size, flushed on a cadence (1: a frame per chunk, unpadded).
ENVELOPE_VERSION = 2
DEK_BYTES = 32
NONCE_BYTES = 12
MAX_ENVELOPE_BYTES = 4 << 20
MAX_HEADER_BYTES = 4096
MAX_RECIPIENTS = 256

_HPKE_SUITE = _hpke.Suite(_hpke.KEM.X25519, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


def is_valid_id(value: object) -> bool:
    """Request, tenant and region ids: short printable identifiers (safe to log)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    suite: Suite
    request_id: str
    tenant_id: str
    mode: str
    region: str
    key_ids: tuple[str, ...]
    version: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        ids = (self.request_id, self.tenant_id, self.mode, self.region, *self.key_ids)
        if self.version != ENVELOPE_VERSION or not all(is_valid_id(value) for value in ids):
            raise ValueError("invalid envelope header")
        if not 0 < len(self.key_ids) <= MAX_RECIPIENTS or list(self.key_ids) != sorted(set(self.key_ids)):
            raise ValueError("key_ids must be sorted, unique and non-empty")

    def to_bytes(self) -> bytes:
        fields = {
            "v": self.version,
            "suite": self.suite.value,
            "request_id": self.request_id,
            "tenant_id": self.tenant_id,
            "mode": self.mode,
            "region": self.region,
            "key_ids": list(self.key_ids),
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EnvelopeHeader:
        """Strict parse; the bytes must be exactly the canonical encoding (one header, one byte string)."""
        try:
            fields = json.loads(data)
            header = cls(
                suite=Suite(fields["suite"]),
                request_id=fields["request_id"],
                tenant_id=fields["tenant_id"],
                mode=fields["mode"],
                region=fields["region"],
                key_ids=tuple(fields["key_ids"]),
                version=fields["v"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError("invalid envelope header") from exc
        if header.to_bytes() != data or len(data) > MAX_HEADER_BYTES:
            raise ValueError("invalid envelope header")
        return header


@dataclass(frozen=True, slots=True)
class Envelope:
    """A sealed request as it crosses the host side. Only the header is readable there (ids, no content)."""

    header_bytes: bytes
    wrapped_keys: Mapping[str, bytes]
    nonce: bytes
    ciphertext: bytes
    header: EnvelopeHeader = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        header = EnvelopeHeader.from_bytes(self.header_bytes)
        if tuple(sorted(self.wrapped_keys)) != header.key_ids or len(self.nonce) != NONCE_BYTES:
            raise ValueError("envelope keys do not match its header")
        object.__setattr__(self, "header", header)

    def to_dict(self) -> dict[str, Any]:
        b64 = _b64encode
        return {
            "header": b64(self.header_bytes),
            "keys": {key_id: b64(wrapped) for key_id, wrapped in sorted(self.wrapped_keys.items())},
            "nonce": b64(self.nonce),
            "ciphertext": b64(self.ciphertext),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """Parse untrusted input; any malformation is a ValueError with a content-free message."""
        try:
            keys = data["keys"]
            if not isinstance(keys, Mapping) or len(keys) > MAX_RECIPIENTS:
                raise ValueError("bad keys")
            return cls(
                header_bytes=_b64decode(data["header"]),
                wrapped_keys={str(key_id): _b64decode(wrapped) for key_id, wrapped in keys.items()},
                nonce=_b64decode(data["nonce"]),
                ciphertext=_b64decode(data["ciphertext"]),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ValueError("malformed envelope") from exc

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise ValueError("malformed envelope")
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise ValueError("malformed envelope") from exc
        if not isinstance(parsed, Mapping):
            raise ValueError("malformed envelope")
        return cls.from_dict(parsed)


@dataclass(frozen=True, slots=True)
class SealedRequest:
    """What the sealer keeps: the envelope to send and the DEK that opens the response stream."""

    envelope: Envelope
    dek: bytes = field(repr=False)

    @property
    def request_id(self) -> str:
        return self.envelope.header.request_id


@dataclass(frozen=True, slots=True)
class OpenedRequest:
    """Inside the worker only: the authenticated header, the plaintext body and the DEK."""

    header: EnvelopeHeader
    body: bytes = field(repr=False)
    dek: bytes = field(repr=False)


def _wrap_context(key_id: str, header_bytes: bytes) -> bytes:
    return b"securechat/v2/dek\x00" + key_id.encode() + b"\x00" + hashlib.sha256(header_bytes).digest()


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)


def _wrap(recipient: RecipientKey, dek: bytes, context: bytes) -> bytes:
    public_key = recipient.load()
    if isinstance(public_key, x25519.X25519PublicKey):
        return _HPKE_SUITE.encrypt(dek, public_key, info=context)
    return public_key.encrypt(dek, _oaep(context))


def seal_request(
    body: bytes,
    *,
    request_id: str,
    tenant_id: str,
    mode: str,
    region: str,
    recipients: Sequence[RecipientKey],
    suite: Suite = Suite.HPKE_X25519,
    _dek: bytes | None = None,
    _nonce: bytes | None = None,
) -> SealedRequest:
    """Seal ``body`` for every recipient key of ``suite``; ``_dek``/``_nonce`` exist for known-answer tests."""
    chosen = {key.key_id: key for key in recipients if key.suite is suite}
    if not chosen:
        raise ValueError("no recipient key for the chosen suite")
    header = EnvelopeHeader(
        suite=suite,
        request_id=request_id,
        tenant_id=tenant_id,
        mode=mode,
        region=region,
        key_ids=tuple(sorted(chosen)),
    )
    header_bytes = header.to_bytes()
    dek = _dek if _dek is not None else AESGCM.generate_key(bit_length=256)
    nonce = _nonce if _nonce is not None else os.urandom(NONCE_BYTES)
    if len(dek) != DEK_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError("bad DEK or nonce length")
    wrapped = {key_id: _wrap(key, dek, _wrap_context(key_id, header_bytes)) for key_id, key in chosen.items()}
    ciphertext = AESGCM(dek).encrypt(nonce, body, header_bytes)
    envelope = Envelope(header_bytes=header_bytes, wrapped_keys=wrapped, nonce=nonce, ciphertext=ciphertext)
    return SealedRequest(envelope=envelope, dek=dek)


def open_request(envelope: Envelope, keys: WorkerKeys) -> OpenedRequest:
    """Authenticate and open an envelope with this worker's keys. Every failure: InvalidCiphertext."""
    header = envelope.header
    for key_id in header.key_ids:
        found = keys.private_key_for(key_id)
        if found is None:
            continue
        suite, private_key = found
        if suite is not header.suite:
            break
        context = _wrap_context(key_id, envelope.header_bytes)
        try:
            if isinstance(private_key, x25519.X25519PrivateKey):
                dek = _HPKE_SUITE.decrypt(envelope.wrapped_keys[key_id], private_key, info=context)
            else:
                assert isinstance(private_key, rsa.RSAPrivateKey)
                dek = private_key.decrypt(envelope.wrapped_keys[key_id], _oaep(context))
            if len(dek) != DEK_BYTES:
                break
            body = AESGCM(dek).decrypt(envelope.nonce, envelope.ciphertext, envelope.header_bytes)
        except (InvalidTag, ValueError):
            break
        return OpenedRequest(header=header, body=body, dek=dek)
    raise InvalidCiphertext()


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64decode(data: object) -> bytes:
    if not isinstance(data, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(data, validate=True)
