"""Sealed request envelopes: AES-256-GCM body under a per-request data key (DEK), DEK wrapped per worker key.

Layout (JSON on the wire, every binary field base64)::

    header      canonical JSON bytes; the body's AAD (version, request_id, tenant_id, mode, region, expires_at,
                and for every wrap its key id and suite)
    keys        {key_id: wrapped DEK}; wrap context = suite + key_id + SHA-256(header), so a wrapped key cannot
                be moved to another key, suite or envelope
    nonce       12 random bytes
    ciphertext  AES-256-GCM(DEK, nonce, body, aad=header)

The sealer need not know which replica will be chosen: it wraps the DEK for one verified key of every worker,
in a suite its policy allows (``securechat.suites``; the post-quantum hybrid by default). The header names the
suite of every wrap and is authenticated, so a host that strips, adds or relabels a wrap is refused. It also
says until when the envelope may run (``expires_at``, unix seconds): workers refuse it afterwards and remember
every one they ran until then (``securechat.replay``), so the host cannot run one envelope twice on a worker.
Opening authenticates everything before any plaintext is returned; every failure is InvalidCiphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securechat.errors import InvalidCiphertext
from securechat.keys import RecipientKey, Suite, WorkerKeys
from securechat.suites import unwrap, wrap

# The protocol version, envelope and response stream together (securechat.stream); a worker refuses any other.
# 4: the header says until when the envelope may run (expires_at), the final frame's clear token counts are
# rounded up to buckets (securechat.stream); 3: the header names each wrap's suite (post-quantum hybrid wraps);
# 2: one suite per envelope, response frames of one fixed, padded size flushed on a cadence; 1: a frame per
# chunk, unpadded.
ENVELOPE_VERSION = 4
DEFAULT_TTL_S = 120  # how long after sealing an envelope may run: longer than any queueing before a worker
MAX_EXPIRES_AT = 2**53
DEK_BYTES = 32
NONCE_BYTES = 12
MAX_ENVELOPE_BYTES = 4 << 20
MAX_HEADER_BYTES = 32 << 10  # MAX_RECIPIENTS wraps of ~90 bytes each, plus the ids
MAX_RECIPIENTS = 256

ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
_ID = re.compile(ID_PATTERN)


def is_valid_id(value: object) -> bool:
    """Request, tenant and region ids: short printable identifiers (safe to log)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    request_id: str
    tenant_id: str
    mode: str
    region: str
    wraps: tuple[tuple[str, Suite], ...]  # (key id, suite) of every wrapped DEK, sorted by key id
    expires_at: int  # unix seconds: no worker runs the envelope afterwards
    version: int = ENVELOPE_VERSION

    def __post_init__(self) -> None:
        ids = (self.request_id, self.tenant_id, self.mode, self.region, *self.key_ids)
        if self.version != ENVELOPE_VERSION or not all(is_valid_id(value) for value in ids):
            raise ValueError("invalid envelope header")
        expires_at = self.expires_at
        if not isinstance(expires_at, int) or isinstance(expires_at, bool) or not 0 < expires_at < MAX_EXPIRES_AT:
            raise ValueError("invalid envelope header")
        if not 0 < len(self.wraps) <= MAX_RECIPIENTS or list(self.key_ids) != sorted(set(self.key_ids)):
            raise ValueError("wraps must be sorted by key id, unique and non-empty")
        if not all(isinstance(suite, Suite) for _, suite in self.wraps):
            raise ValueError("invalid envelope header")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.wraps)

    def suite_of(self, key_id: str) -> Suite | None:
        return next((suite for candidate, suite in self.wraps if candidate == key_id), None)

    def to_bytes(self) -> bytes:
        fields = {
            "v": self.version,
            "request_id": self.request_id,
            "tenant_id": self.tenant_id,
            "mode": self.mode,
            "region": self.region,
            "expires_at": self.expires_at,
            "wraps": {key_id: suite.value for key_id, suite in self.wraps},
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> EnvelopeHeader:
        """Strict parse; the bytes must be exactly the canonical encoding (one header, one byte string)."""
        if len(data) > MAX_HEADER_BYTES:
            raise ValueError("invalid envelope header")
        try:
            fields = json.loads(data)
            wraps = fields["wraps"]
            if not isinstance(wraps, dict):
                raise ValueError("wraps must be an object")
            header = cls(
                request_id=fields["request_id"],
                tenant_id=fields["tenant_id"],
                mode=fields["mode"],
                region=fields["region"],
                wraps=tuple((key_id, Suite(suite)) for key_id, suite in sorted(wraps.items())),
                expires_at=fields["expires_at"],
                version=fields["v"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError("invalid envelope header") from exc
        if header.to_bytes() != data:
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


def _wrap_context(suite: Suite, key_id: str, header_bytes: bytes) -> bytes:
    digest = hashlib.sha256(header_bytes).digest()
    return b"securechat/v3/dek\x00" + suite.value.encode() + b"\x00" + key_id.encode() + b"\x00" + digest


def seal_request(
    body: bytes,
    *,
    request_id: str,
    tenant_id: str,
    mode: str,
    region: str,
    recipients: Sequence[RecipientKey],
    ttl_s: float = DEFAULT_TTL_S,
    _dek: bytes | None = None,
    _nonce: bytes | None = None,
    _now: float | None = None,
) -> SealedRequest:
    """Seal ``body`` for every recipient key, each in its own suite, to run within ``ttl_s`` from now.

    Which keys (and so which suites) to seal to is the caller's policy: ``preferred_key`` per worker.
    ``_dek``, ``_nonce`` and ``_now`` exist for known-answer tests.
    """
    chosen = {key.key_id: key for key in recipients}
    if not chosen or len(chosen) != len(recipients):
        raise ValueError("recipients must be non-empty with unique key ids")
    header = EnvelopeHeader(
        request_id=request_id,
        tenant_id=tenant_id,
        mode=mode,
        region=region,
        wraps=tuple((key_id, chosen[key_id].suite) for key_id in sorted(chosen)),
        expires_at=math.ceil((time.time() if _now is None else _now) + ttl_s),
    )
    header_bytes = header.to_bytes()
    dek = _dek if _dek is not None else AESGCM.generate_key(bit_length=256)
    nonce = _nonce if _nonce is not None else os.urandom(NONCE_BYTES)
    if len(dek) != DEK_BYTES or len(nonce) != NONCE_BYTES:
        raise ValueError("bad DEK or nonce length")
    wrapped = {
        key_id: wrap(key.suite, key.load(), dek, _wrap_context(key.suite, key_id, header_bytes))
        for key_id, key in chosen.items()
    }
    ciphertext = AESGCM(dek).encrypt(nonce, body, header_bytes)
    envelope = Envelope(header_bytes=header_bytes, wrapped_keys=wrapped, nonce=nonce, ciphertext=ciphertext)
    return SealedRequest(envelope=envelope, dek=dek)


def open_request(envelope: Envelope, keys: WorkerKeys) -> OpenedRequest:
    """Authenticate and open an envelope with this worker's keys. Every failure: InvalidCiphertext.

    The first wrap for one of this worker's key ids is the only one tried, and only in the suite that key was
    made for: a header that names another suite for it is refused, never opened the other way.
    """
    header = envelope.header
    for key_id, suite in header.wraps:
        found = keys.private_key_for(key_id)
        if found is None:
            continue
        own_suite, private_key = found
        if own_suite is not suite:
            break
        context = _wrap_context(suite, key_id, envelope.header_bytes)
        try:
            dek = unwrap(suite, private_key, envelope.wrapped_keys[key_id], context)
            if len(dek) != DEK_BYTES:
                break
            body = AESGCM(dek).decrypt(envelope.nonce, envelope.ciphertext, envelope.header_bytes)
        except (InvalidTag, ValueError, TypeError):
            break
        return OpenedRequest(header=header, body=body, dek=dek)
    raise InvalidCiphertext()


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _b64decode(data: object) -> bytes:
    if not isinstance(data, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(data, validate=True)
