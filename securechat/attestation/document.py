"""The attestation document: what a worker's platform says about it, signed by the worker's attestation key.

Shape after an AWS Nitro attestation document (module id, PCR-like registers, public keys, nonce, timestamp,
certificate) with the key expiry and debug flag that Apple PCC and TDX evidence carry. The signature covers
the domain tag and the canonical JSON of every other field, the certificate included, so the document cannot
be re-paired with another certificate. ``from_dict`` only parses: the verifier decides whether to trust it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final, NoReturn, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation._canonical import (
    b64decode,
    b64encode,
    exact_keys,
    read_bool,
    read_hex,
    read_int,
    read_name,
    signed_bytes,
)
from securechat.attestation.certificate import (
    ED25519_SIGNATURE_BYTES,
    AttestationKeyCertificate,
    endorse_attestation_key,
)
from securechat.attestation.measurement import MAX_REGISTERS, REGISTER_HEX
from securechat.envelope import is_valid_id
from securechat.keys import KEY_ID_HEX_CHARS, RecipientKey, Suite

DOCUMENT_VERSION: Final = 1
MODULE_ID: Final = "securechat-simulated-enclave"
MAX_PUBLIC_KEYS: Final = 8
MAX_PUBLIC_KEY_BYTES: Final = 2048  # an RSA-3072 SPKI is ~420 bytes, a hybrid ML-KEM-768 + X25519 key 1,216
NONCE_MIN_HEX: Final = 32  # 128 bits: unguessable, so a document cannot be prepared before the challenge
NONCE_MAX_HEX: Final = 128

_DOMAIN: Final = b"securechat-attestation-document-v1"
_FIELDS: Final = frozenset(
    {
        "version",
        "module_id",
        "worker_id",
        "registers",
        "public_keys",
        "key_expiry",
        "timestamp",
        "nonce",
        "debug",
        "certificate",
        "signature",
    }
)
_KEY_FIELDS: Final = frozenset({"suite", "key_id", "public_key"})
_SUITES: Final = frozenset(suite.value for suite in Suite)


class WorkerIdentityLike(Protocol):
    """What an attester needs of ``securechat.worker.WorkerIdentity``; a Protocol, so worker.py can import this
    package (for an ``attest`` hook) without an import cycle."""

    @property
    def worker_id(self) -> str: ...

    @property
    def public_keys(self) -> tuple[RecipientKey, ...]: ...


@dataclass(frozen=True, slots=True)
class AttestationDocument:
    worker_id: str
    registers: Mapping[str, str]  # register name -> hex SHA-256
    public_keys: tuple[RecipientKey, ...]
    key_expiry: int  # unix seconds; senders must not seal to these keys afterwards
    timestamp: int  # unix seconds, when the document was issued
    nonce: str  # hex, chosen by the verifier
    debug: bool
    certificate: AttestationKeyCertificate
    signature: bytes = field(repr=False)
    module_id: str = MODULE_ID
    version: int = DOCUMENT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "registers", MappingProxyType(dict(self.registers)))

    def _body(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "module_id": self.module_id,
            "worker_id": self.worker_id,
            "registers": dict(self.registers),
            "public_keys": [key.to_dict() for key in self.public_keys],
            "key_expiry": self.key_expiry,
            "timestamp": self.timestamp,
            "nonce": self.nonce,
            "debug": self.debug,
            "certificate": self.certificate.to_dict(),
        }

    def signed_bytes(self) -> bytes:
        return signed_bytes(_DOMAIN, self._body())

    def verify_signature(self, attestation_key: ed25519.Ed25519PublicKey) -> bool:
        try:
            attestation_key.verify(self.signature, self.signed_bytes())
        except InvalidSignature:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {**self._body(), "signature": b64encode(self.signature)}

    @classmethod
    def from_dict(cls, data: object) -> AttestationDocument:
        """Strict parse: exact field set, exact types, bounded sizes. Checks nothing cryptographic."""
        fields = exact_keys(data, _FIELDS)
        if read_int(fields["version"]) != DOCUMENT_VERSION:
            raise ValueError("unsupported document version")
        if not is_valid_id(fields["module_id"]) or not is_valid_id(fields["worker_id"]):
            raise ValueError("invalid document id field")
        signature = b64decode(fields["signature"], max_bytes=ED25519_SIGNATURE_BYTES)
        if len(signature) != ED25519_SIGNATURE_BYTES:
            raise ValueError("invalid document signature length")
        return cls(
            worker_id=fields["worker_id"],
            registers=_read_registers(fields["registers"]),
            public_keys=_read_public_keys(fields["public_keys"]),
            key_expiry=read_int(fields["key_expiry"]),
            timestamp=read_int(fields["timestamp"]),
            nonce=read_hex(fields["nonce"], min_chars=NONCE_MIN_HEX, max_chars=NONCE_MAX_HEX),
            debug=read_bool(fields["debug"]),
            certificate=AttestationKeyCertificate.from_dict(fields["certificate"]),
            signature=signature,
            module_id=fields["module_id"],
        )


def _read_registers(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not 0 < len(value) <= MAX_REGISTERS:
        raise ValueError("invalid registers")
    return {
        read_name(name): read_hex(digest, min_chars=REGISTER_HEX, max_chars=REGISTER_HEX)
        for name, digest in value.items()
    }


def _read_public_keys(value: object) -> tuple[RecipientKey, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_PUBLIC_KEYS:
        raise ValueError("invalid public key list")
    keys: list[RecipientKey] = []
    for item in value:
        key_fields = exact_keys(item, _KEY_FIELDS)
        suite = key_fields["suite"]
        if not isinstance(suite, str) or suite not in _SUITES:
            raise ValueError("unknown suite")
        # Built directly, not with RecipientKey.from_dict: that checks key id against key, and the verifier
        # must report a substituted key as key_id_mismatch (after the signature), not as a parse error.
        keys.append(
            RecipientKey(
                suite=Suite(suite),
                key_id=read_hex(key_fields["key_id"], min_chars=KEY_ID_HEX_CHARS, max_chars=KEY_ID_HEX_CHARS),
                public_key_bytes=b64decode(key_fields["public_key"], max_bytes=MAX_PUBLIC_KEY_BYTES),
            )
        )
    if len({key.key_id for key in keys}) != len(keys):
        raise ValueError("duplicate key id")
    return tuple(keys)


class Attester:
    """The platform side inside one worker: an attestation key endorsed by the root for this worker only.

    Built once at start-up with the root; keeps only the attestation key afterwards (see platform_root). The
    worker's keys expire ``key_ttl_s`` after start-up, and every document says so: re-attesting does not extend
    them (restart = new keys). The certificate lasts ``cert_ttl_s``, by default exactly as long as the keys.
    """

    __slots__ = ("_certificate", "_debug", "_identity", "_key_expiry", "_module_id", "_registers", "_signing_key")

    def __init__(
        self,
        root: ed25519.Ed25519PrivateKey,
        identity: WorkerIdentityLike,
        registers: Mapping[str, str],
        *,
        key_ttl_s: int,
        cert_ttl_s: int | None = None,
        debug: bool = False,
        now: float | None = None,
        module_id: str = MODULE_ID,
    ) -> None:
        issued_at = int(time.time() if now is None else now)
        # The certificate may outlive the keys (a platform's attestation key often does) but never the reverse:
        # a worker must be able to attest its keys for as long as senders may seal to them.
        cert_ttl_s = key_ttl_s if cert_ttl_s is None else cert_ttl_s
        if not identity.public_keys or not is_valid_id(module_id) or not 0 < key_ttl_s <= cert_ttl_s:
            raise ValueError("an attester needs public keys, a module id and key_ttl_s <= cert_ttl_s")
        _read_registers(dict(registers))  # refuse to sign what no verifier could parse
        self._signing_key = ed25519.Ed25519PrivateKey.generate()
        self._certificate = endorse_attestation_key(
            root, identity.worker_id, self._signing_key.public_key(), now=issued_at, ttl_s=cert_ttl_s
        )
        self._identity = identity
        self._registers = dict(registers)
        self._debug = debug
        self._key_expiry = issued_at + key_ttl_s
        self._module_id = module_id

    @property
    def certificate(self) -> AttestationKeyCertificate:
        return self._certificate

    @property
    def key_expiry(self) -> int:
        return self._key_expiry

    def attest(self, nonce: str, *, now: float | None = None) -> AttestationDocument:
        """A fresh document answering ``nonce``; ``now`` is injectable for tests."""
        unsigned = AttestationDocument(
            worker_id=self._identity.worker_id,
            registers=self._registers,
            public_keys=self._identity.public_keys,
            key_expiry=self._key_expiry,
            timestamp=int(time.time() if now is None else now),
            nonce=read_hex(nonce, min_chars=NONCE_MIN_HEX, max_chars=NONCE_MAX_HEX),
            debug=self._debug,
            certificate=self._certificate,
            signature=b"",
            module_id=self._module_id,
        )
        return replace(unsigned, signature=self._signing_key.sign(unsigned.signed_bytes()))

    def __repr__(self) -> str:
        return f"Attester(worker_id={self._identity.worker_id!r}, key_expiry={self._key_expiry})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("attestation keys never leave the process")


def issue_document(
    root: ed25519.Ed25519PrivateKey,
    identity: WorkerIdentityLike,
    registers: Mapping[str, str],
    nonce: str,
    *,
    now: float,
    key_ttl_s: int,
    debug: bool = False,
    module_id: str = MODULE_ID,
) -> AttestationDocument:
    """One document with a one-off attestation key: for tools and tests; workers keep an ``Attester``."""
    attester = Attester(root, identity, registers, key_ttl_s=key_ttl_s, debug=debug, now=now, module_id=module_id)
    return attester.attest(nonce, now=now)
