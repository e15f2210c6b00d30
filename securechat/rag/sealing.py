"""What a collection's blobs are: AES-256-GCM under keys derived from the collection key, bound to their place.

Each blob is ``nonce (12 random bytes) || ciphertext || tag``; the AAD names its field and where it belongs::

    aad = "securechat/v2/rag/" field NUL tenant_id NUL collection_id NUL doc_id NUL version:u64 BE | index:u32 BE

so the host cannot move a chunk to another document, version, position or collection, or swap a document's
metadata with another's: every such blob fails to open, with the one opaque ``InvalidCiphertext``. Random
nonces are safe for far more blobs than a collection holds (2^32 per derived key keeps the collision risk
below 2^-32).

Fields: ``chunk`` (the chunk's UTF-8 text), ``embedding`` (its float32 vector, little endian), ``meta`` (the
document's JSON metadata: filename, media type, sizes).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Final

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from securechat.errors import InvalidCiphertext
from securechat.rag.keys import CollectionKey

NONCE_BYTES: Final = 12
_POSITION = struct.Struct(">QI")  # version, index


class CollectionCipher:
    """Seals and opens the blobs of one tenant's collection (inside a worker, or the client for metadata)."""

    def __init__(self, key: CollectionKey, tenant_id: str, collection_id: str) -> None:
        self._aead = AESGCM(key.subkey("blobs", tenant_id, collection_id))
        self._scope = f"\x00{tenant_id}\x00{collection_id}\x00".encode()

    def _aad(self, field: str, doc_id: str, version: int, index: int) -> bytes:
        return (
            b"securechat/v2/rag/"
            + field.encode()
            + self._scope
            + doc_id.encode()
            + b"\x00"
            + _POSITION.pack(version, index)
        )

    def _seal(self, field: str, doc_id: str, version: int, index: int, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, self._aad(field, doc_id, version, index))

    def _open(self, field: str, doc_id: str, version: int, index: int, blob: bytes) -> bytes:
        if len(blob) < NONCE_BYTES + 16:
            raise InvalidCiphertext()
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad(field, doc_id, version, index))
        except InvalidTag:
            raise InvalidCiphertext() from None

    def seal_chunk(self, doc_id: str, version: int, index: int, text: str) -> bytes:
        return self._seal("chunk", doc_id, version, index, text.encode())

    def open_chunk(self, doc_id: str, version: int, index: int, blob: bytes) -> str:
        return self._open("chunk", doc_id, version, index, blob).decode()

    def seal_embedding(self, doc_id: str, version: int, index: int, vector: np.ndarray) -> bytes:
        return self._seal("embedding", doc_id, version, index, vector.astype("<f4").tobytes())

    def open_embedding(self, doc_id: str, version: int, index: int, blob: bytes) -> np.ndarray:
        return np.frombuffer(self._open("embedding", doc_id, version, index, blob), dtype="<f4")

    def opens(self, field: str, doc_id: str, version: int, index: int, blob: bytes) -> bool:
        """Whether a stored blob (``field`` "meta" or "chunk") opens under this key: proof that the key is the
        collection's, so a manifest that fails under it was forged, not sealed under another key."""
        try:
            self._open(field, doc_id, version, index, blob)
        except InvalidCiphertext:
            return False
        return True

    def seal_meta(self, doc_id: str, version: int, meta: dict[str, Any]) -> bytes:
        return self._seal("meta", doc_id, version, 0, json.dumps(meta, separators=(",", ":")).encode())

    def open_meta(self, doc_id: str, version: int, blob: bytes) -> dict[str, Any]:
        try:
            meta = json.loads(self._open("meta", doc_id, version, 0, blob))
        except ValueError:
            raise InvalidCiphertext() from None
        if not isinstance(meta, dict):
            raise InvalidCiphertext()
        return meta
