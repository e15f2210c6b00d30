"""Worker key pairs (made in memory, never exported) and the public keys that senders seal to.

A worker holds one key pair per configured suite (``securechat.suites``; by default only the post-quantum
hybrid). Its public half travels as a ``RecipientKey``: suite, key id and the suite's public encoding.
``key_id`` is the SHA-256 of that encoding, so a key id names exactly one public key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from securechat.suites import (
    DEFAULT_SUITES,
    PrivateKey,
    PublicKey,
    Suite,
    generate_key_pair,
    load_public_key,
    suite_of,
)

KEY_ID_HEX_CHARS = 32  # 128 bits of SHA-256: collision-safe for key directories

__all__ = ["KEY_ID_HEX_CHARS", "RecipientKey", "Suite", "WorkerKeys", "key_id_for", "preferred_key", "recipients_of"]


def key_id_for(public_key_bytes: bytes) -> str:
    return hashlib.sha256(public_key_bytes).hexdigest()[:KEY_ID_HEX_CHARS]


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A worker's public key for one suite, as published in replica metadata and attestation documents."""

    suite: Suite
    key_id: str
    public_key_bytes: bytes  # SPKI DER (X25519, RSA) or the hybrid KEM's own encoding (securechat.suites)

    @classmethod
    def from_public_bytes(cls, suite: Suite, public_key_bytes: bytes) -> RecipientKey:
        return cls(suite=suite, key_id=key_id_for(public_key_bytes), public_key_bytes=public_key_bytes)

    def load(self) -> PublicKey:
        """The key object, after checking it matches its suite and its id (a substituted key is refused)."""
        if key_id_for(self.public_key_bytes) != self.key_id:
            raise ValueError("key id does not match public key")
        return load_public_key(self.suite, self.public_key_bytes)

    def to_dict(self) -> dict[str, str]:
        return {
            "suite": self.suite.value,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key_bytes).decode(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecipientKey:
        key = cls(
            suite=Suite(data["suite"]),
            key_id=str(data["key_id"]),
            public_key_bytes=base64.b64decode(data["public_key"], validate=True),
        )
        key.load()
        return key


def preferred_key(keys: Iterable[RecipientKey], suites: Sequence[Suite]) -> RecipientKey | None:
    """One worker's key to seal to: of the suites allowed, the earliest in ``suites`` it offers; None if none."""
    offered = {key.suite: key for key in keys}
    return next((offered[suite] for suite in suites if suite in offered), None)


def recipients_of(workers: Iterable[Mapping[str, Any]], suites: Sequence[Suite] = DEFAULT_SUITES) -> list[RecipientKey]:
    """One key per worker of a key-directory listing (``GET /v1/keys``'s ``workers``: unverified, for tools
    that trust the host), of the earliest of ``suites`` each offers; workers offering none are left out."""
    chosen = (preferred_key((RecipientKey.from_dict(key) for key in worker["keys"]), suites) for worker in workers)
    return [key for key in chosen if key is not None]


class WorkerKeys:
    """One in-memory key pair per suite. Private halves have no accessor, no repr and refuse pickling,
    so they cannot be returned through Ray, logged or written to disk by accident."""

    __slots__ = ("_private", "_public")

    def __init__(self, key_pairs: Mapping[Suite, tuple[PrivateKey, bytes]]) -> None:
        """``key_pairs``: suite -> (private key, public encoding), e.g. from ``securechat.suites``."""
        if not key_pairs:
            raise ValueError("a worker needs at least one key pair")
        self._private: dict[Suite, PrivateKey] = {}
        self._public: dict[Suite, RecipientKey] = {}
        for suite, (private_key, public_bytes) in key_pairs.items():
            if suite_of(private_key) is not suite:
                raise ValueError("private key does not fit its suite")
            self._private[suite] = private_key
            self._public[suite] = RecipientKey.from_public_bytes(suite, public_bytes)

    @classmethod
    def generate(cls, suites: Sequence[Suite] = DEFAULT_SUITES) -> WorkerKeys:
        return cls({suite: generate_key_pair(suite) for suite in suites})

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
