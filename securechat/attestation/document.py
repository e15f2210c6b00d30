"""The attestation document: a worker's keys and registers, and its platform's evidence that vouches for them.

::

    {"version": 2, "platform": "simulated" | "sev-snp" | "tdx", "worker_id": ..., "registers": {name: hex},
     "public_keys": [{"suite", "key_id", "public_key"}, ...], "key_expiry": s, "timestamp": s, "nonce": hex,
     "evidence": {...}}

Nothing in it is signed on its own: the platform's report signs 64 bytes of report data, and those are a hash
of the nonce, the keys statement (worker id, keys, expiry, timestamp) and the registers (``binding.py``). A
verifier recomputes them from the document and compares (``report_data_mismatch``), so no field can be changed
without the evidence failing. ``from_dict`` only parses; the verifier decides whether to trust it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, NoReturn, Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519

from securechat.attestation._canonical import b64decode, canonical_json, exact_keys, read_hex, read_int, read_name
from securechat.attestation.binding import report_data_for
from securechat.attestation.evidence import EvidenceSource, Platform
from securechat.attestation.measurement import MAX_REGISTERS, REGISTER_HEX
from securechat.attestation.simulated import SimulatedSource
from securechat.envelope import is_valid_id
from securechat.keys import KEY_ID_HEX_CHARS, RecipientKey, Suite

DOCUMENT_VERSION: Final = 2
MAX_PUBLIC_KEYS: Final = 8
MAX_PUBLIC_KEY_BYTES: Final = 2048  # an RSA-3072 SPKI is ~420 bytes, a hybrid ML-KEM-768 + X25519 key 1,216
MAX_EVIDENCE_BYTES: Final = 256 << 10  # a TDX quote with its collateral is the largest: ~20 KiB
NONCE_MIN_HEX: Final = 32  # 128 bits: unguessable, so a document cannot be prepared before the challenge
NONCE_MAX_HEX: Final = 128

_FIELDS: Final = frozenset(
    {"version", "platform", "worker_id", "registers", "public_keys", "key_expiry", "timestamp", "nonce", "evidence"}
)
_KEY_FIELDS: Final = frozenset({"suite", "key_id", "public_key"})
_SUITES: Final = frozenset(suite.value for suite in Suite)
_PLATFORMS: Final = frozenset(platform.value for platform in Platform)


class WorkerIdentityLike(Protocol):
    """What an attester needs of ``securechat.worker.WorkerIdentity``; a Protocol, so worker.py can import this
    package (for an ``attest`` hook) without an import cycle."""

    @property
    def worker_id(self) -> str: ...

    @property
    def public_keys(self) -> tuple[RecipientKey, ...]: ...


@dataclass(frozen=True, slots=True)
class AttestationDocument:
    platform: Platform
    worker_id: str
    registers: Mapping[str, str]  # register name -> hex SHA-256
    public_keys: tuple[RecipientKey, ...]
    key_expiry: int  # unix seconds; senders must not seal to these keys afterwards
    timestamp: int  # unix seconds, when the document was issued
    nonce: str  # hex, chosen by the verifier
    evidence: Mapping[str, Any] = field(repr=False)  # the platform's (``securechat.attestation.evidence``)
    version: int = DOCUMENT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "registers", MappingProxyType(dict(self.registers)))

    def report_data(self) -> bytes:
        """The 64 bytes the evidence must carry for this document to be what it says (``binding.py``)."""
        return report_data_for(
            self.nonce, self.worker_id, self.public_keys, self.key_expiry, self.timestamp, self.registers
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "platform": self.platform.value,
            "worker_id": self.worker_id,
            "registers": dict(self.registers),
            "public_keys": [key.to_dict() for key in self.public_keys],
            "key_expiry": self.key_expiry,
            "timestamp": self.timestamp,
            "nonce": self.nonce,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_dict(cls, data: object) -> AttestationDocument:
        """Strict parse: exact field set, exact types, bounded sizes. Checks nothing cryptographic."""
        fields = exact_keys(data, _FIELDS)
        if read_int(fields["version"]) != DOCUMENT_VERSION:
            raise ValueError("unsupported document version")
        if fields["platform"] not in _PLATFORMS or not is_valid_id(fields["worker_id"]):
            raise ValueError("invalid document platform or worker id")
        if not isinstance(fields["evidence"], Mapping) or len(canonical_json(fields["evidence"])) > MAX_EVIDENCE_BYTES:
            raise ValueError("invalid evidence")
        return cls(
            platform=Platform(fields["platform"]),
            worker_id=fields["worker_id"],
            registers=_read_registers(fields["registers"]),
            public_keys=_read_public_keys(fields["public_keys"]),
            key_expiry=read_int(fields["key_expiry"]),
            timestamp=read_int(fields["timestamp"]),
            nonce=read_hex(fields["nonce"], min_chars=NONCE_MIN_HEX, max_chars=NONCE_MAX_HEX),
            evidence=fields["evidence"],
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
        # must report a substituted key as key_id_mismatch (after the evidence), not as a parse error.
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
    """Inside one worker: fresh documents for its keys and registers, with its platform's evidence.

    Built once at start-up, after the model is in place (it is measured). The worker's keys expire ``key_ttl_s``
    after start-up, and every document says so: re-attesting does not extend them (restart = new keys).
    """

    __slots__ = ("_identity", "_key_expiry", "_registers", "_source")

    def __init__(
        self,
        source: EvidenceSource,
        identity: WorkerIdentityLike,
        registers: Mapping[str, str],
        *,
        key_ttl_s: int,
        now: float | None = None,
    ) -> None:
        if not identity.public_keys or key_ttl_s <= 0:
            raise ValueError("an attester needs public keys and a positive key lifetime")
        _read_registers(dict(registers))  # refuse to attest what no verifier could parse
        self._source = source
        self._identity = identity
        self._registers = dict(registers)
        self._key_expiry = int(time.time() if now is None else now) + key_ttl_s

    @classmethod
    def simulated(
        cls,
        root: ed25519.Ed25519PrivateKey,
        identity: WorkerIdentityLike,
        registers: Mapping[str, str],
        *,
        key_ttl_s: int,
        cert_ttl_s: int | None = None,
        debug: bool = False,
        now: float | None = None,
    ) -> Attester:
        """On the simulated platform: the root endorses an attestation key for this worker. The certificate may
        outlive the keys (a platform's attestation key often does) but never the reverse."""
        cert_ttl_s = key_ttl_s if cert_ttl_s is None else cert_ttl_s
        if not 0 < key_ttl_s <= cert_ttl_s:
            raise ValueError("key_ttl_s must be positive and at most cert_ttl_s")
        source = SimulatedSource(root, identity.worker_id, cert_ttl_s=cert_ttl_s, debug=debug, now=now)
        return cls(source, identity, registers, key_ttl_s=key_ttl_s, now=now)

    @property
    def platform(self) -> Platform:
        return self._source.platform

    @property
    def key_expiry(self) -> int:
        return self._key_expiry

    def attest(self, nonce: str, *, now: float | None = None) -> AttestationDocument:
        """A fresh document answering ``nonce``; ``now`` is injectable for tests."""
        read_hex(nonce, min_chars=NONCE_MIN_HEX, max_chars=NONCE_MAX_HEX)
        timestamp = int(time.time() if now is None else now)
        identity = self._identity
        binding = report_data_for(
            nonce, identity.worker_id, identity.public_keys, self._key_expiry, timestamp, self._registers
        )
        return AttestationDocument(
            platform=self._source.platform,
            worker_id=identity.worker_id,
            registers=self._registers,
            public_keys=identity.public_keys,
            key_expiry=self._key_expiry,
            timestamp=timestamp,
            nonce=nonce,
            evidence=self._source.evidence(binding),
        )

    def __repr__(self) -> str:
        return f"Attester(worker_id={self._identity.worker_id!r}, platform={self.platform.value})"

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
) -> AttestationDocument:
    """One simulated document with a one-off attestation key: for tools and tests; workers keep an ``Attester``."""
    attester = Attester.simulated(root, identity, registers, key_ttl_s=key_ttl_s, debug=debug, now=now)
    return attester.attest(nonce, now=now)
