"""Collection keys: 256-bit secrets that only clients hold, and the keys derived from them for each purpose.

A collection key never reaches the host in the clear: it travels inside request envelopes sealed to attested
workers (or, on the prototype-compatible plain path, to the TLS-terminating gateway, which seals it at once).
Why no key broker on the host side: anyone on the host can seal an envelope to a worker, so a worker that
obtained tenant keys on the host's behalf would answer a host-forged "print every document" query. A key only
the client holds makes that impossible.

Derivations (HKDF-SHA256, no salt; the key is uniformly random)::

    subkey(purpose) = HKDF(key, info = "securechat/v2/rag/" purpose NUL tenant_id NUL collection_id)

so a blob sealed for one tenant's collection cannot be opened as another's, even under the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

COLLECTION_KEY_BYTES: Final = 32


class InvalidCollectionKey(ValueError):
    """Not a 256-bit key in base64 (content-free)."""


@dataclass(frozen=True, slots=True)
class CollectionKey:
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != COLLECTION_KEY_BYTES:
            raise InvalidCollectionKey("a collection key is 32 bytes")

    @classmethod
    def generate(cls) -> CollectionKey:
        return cls(os.urandom(COLLECTION_KEY_BYTES))

    @classmethod
    def from_b64(cls, text: object) -> CollectionKey:
        if not isinstance(text, str):
            raise InvalidCollectionKey("a collection key is base64 text")
        try:
            return cls(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidCollectionKey("a collection key is 32 bytes of base64") from None

    def to_b64(self) -> str:
        return base64.b64encode(self.secret).decode()

    def subkey(self, purpose: str, tenant_id: str, collection_id: str) -> bytes:
        info = f"securechat/v2/rag/{purpose}\x00{tenant_id}\x00{collection_id}".encode()
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(self.secret)

    def fingerprint(self) -> str:
        """A one-way tag of the key, for keying caches inside a worker (never sent anywhere): a request with a
        different key must not be served from a collection decrypted with this one."""
        return hmac.new(self.secret, b"securechat/v2/rag/fingerprint", hashlib.sha256).hexdigest()[:32]
