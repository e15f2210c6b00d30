"""A collection's authenticated state: which documents, at which versions, with how many chunks, make it up now.

Each blob is bound to its document, version and position (``sealing.py``), but only the manifest says which
blobs belong to the collection *now*. Only a holder of the collection key can write one: it is canonical JSON
after an HMAC-SHA256 under ``subkey("manifest")``, so it is bound to its tenant and collection too. Workers
write it on every ingest, clients on every document deletion; the store keeps it beside the blobs and can
neither forge nor edit it.

- **No mixing, dropping or hiding.** A worker answers from a collection only when the blobs it loads are exactly
  those the manifest lists (every chunk ``0..num_chunks-1`` of every document at its listed version, nothing
  else), all or nothing: else ``collection_tampered``.
- **No rollback below what was seen.** ``counter`` moves on with every change. Clients keep the newest counter
  they have seen (keyring) and seal it into every request; a worker refuses an older state
  (``stale_collection``). Two clients sharing a key stay in step: the counter only moves forward, and each
  learns the newer ones from the answers it gets. What a client that was offline cannot detect: a rollback to
  any state at least as new as the last one it saw (changes others made meanwhile can be hidden from it).
- **No replayed ingest.** ``ingests`` remembers the request ids of the ingests whose envelopes have not expired
  yet, so an old ingest envelope replayed to another worker (whose own replay memory never saw it) is refused
  (``replayed_envelope``) instead of bringing back a document deleted since.

A collection written before manifests existed has none; it is taken as its blobs are (one version per
document, consecutive chunks) until its first ingest or deletion writes one, and only while the client has
seen no counter (a client that has is refused with ``stale_collection`` if the manifest vanishes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Final

from securechat.envelope import is_valid_id
from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.rag.keys import CollectionKey
from securechat.rag.sealing import CollectionCipher
from securechat.rag.store_api import DocumentInfo

MANIFEST_FORMAT: Final = 1
MAC_BYTES: Final = 32
MAX_MANIFEST_BYTES: Final = 8 << 20  # ~100,000 documents
_DOMAIN: Final = b"securechat/v1/rag/manifest\x00"
_FIELDS: Final = frozenset({"v", "counter", "documents", "ingests"})

Blob = tuple[str, int, int]  # doc_id, version, chunk index


class CollectionStateError(Exception):
    """The stored state is not one the key holder wrote (``collection_tampered``) or is older than one the client
    has seen (``stale_collection``). Content-free: the code only."""

    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.value)
        self.code = code


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    version: int
    num_chunks: int


@dataclass(frozen=True, slots=True)
class CollectionManifest:
    counter: int = 0
    documents: Mapping[str, DocumentEntry] = field(default_factory=dict)
    ingests: Mapping[str, int] = field(default_factory=dict)  # request id -> its envelope's expires_at

    def __post_init__(self) -> None:
        object.__setattr__(self, "documents", MappingProxyType(dict(self.documents)))
        object.__setattr__(self, "ingests", MappingProxyType(dict(self.ingests)))

    def blobs(self) -> frozenset[Blob]:
        """Every chunk the collection holds in this state."""
        return frozenset(
            (doc_id, entry.version, index)
            for doc_id, entry in self.documents.items()
            for index in range(entry.num_chunks)
        )

    def after_ingest(
        self, written: Mapping[str, DocumentEntry], request_id: str, expires_at: int, now: float
    ) -> CollectionManifest:
        """The next state: ``written`` replaces those documents; the ingest is remembered until it expires."""
        ingests = {rid: until for rid, until in self.ingests.items() if until > now}
        ingests[request_id] = expires_at
        return CollectionManifest(self.counter + 1, {**self.documents, **written}, ingests)

    def without(self, doc_id: str) -> CollectionManifest:
        documents = {d: entry for d, entry in self.documents.items() if d != doc_id}
        return replace(self, counter=self.counter + 1, documents=documents)

    def to_json(self) -> bytes:
        data = {
            "v": MANIFEST_FORMAT,
            "counter": self.counter,
            "documents": {d: [e.version, e.num_chunks] for d, e in sorted(self.documents.items())},
            "ingests": dict(sorted(self.ingests.items())),
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CollectionManifest:
        parsed = json.loads(data)
        if not isinstance(parsed, dict) or set(parsed) != _FIELDS or parsed["v"] != MANIFEST_FORMAT:
            raise ValueError("not a collection manifest")
        documents, ingests = parsed["documents"], parsed["ingests"]
        if not isinstance(documents, dict) or not isinstance(ingests, dict):
            raise ValueError("not a collection manifest")
        entries = {}
        for doc_id, pair in documents.items():
            if not is_valid_id(doc_id) or not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("not a collection manifest")
            entries[doc_id] = DocumentEntry(_count(pair[0]), _count(pair[1]))
        remembered = {rid: _count(until) for rid, until in ingests.items() if is_valid_id(rid)}
        if len(remembered) != len(ingests):
            raise ValueError("not a collection manifest")
        manifest = cls(_count(parsed["counter"]), entries, remembered)
        if manifest.to_json() != data:  # one encoding: what was authenticated is exactly what is read
            raise ValueError("not a collection manifest")
        return manifest


class ManifestKey:
    """Seals and opens the manifests of one tenant's collection (a worker in a request, or the client)."""

    def __init__(self, key: CollectionKey, tenant_id: str, collection_id: str) -> None:
        self._mac_key = key.subkey("manifest", tenant_id, collection_id)

    def seal(self, manifest: CollectionManifest) -> bytes:
        body = manifest.to_json()
        return self._mac(body) + body

    def open(self, blob: bytes) -> CollectionManifest:
        """The manifest, after checking its MAC; CollectionStateError(COLLECTION_TAMPERED) on any failure."""
        if len(blob) > MAX_MANIFEST_BYTES or not hmac.compare_digest(blob[:MAC_BYTES], self._mac(blob[MAC_BYTES:])):
            raise CollectionStateError(ErrorCode.COLLECTION_TAMPERED)
        try:
            return CollectionManifest.from_json(blob[MAC_BYTES:])
        except (ValueError, TypeError, KeyError):  # authentic but unreadable: a newer client's format
            raise CollectionStateError(ErrorCode.COLLECTION_TAMPERED) from None

    def current(
        self, stored: bytes | None, min_counter: int, blobs: Iterable[Blob], proves_key: Callable[[], bool]
    ) -> CollectionManifest:
        """The state to use: the stored manifest, checked and at least as new as ``min_counter``; with none
        stored, the state the store's ``blobs`` make (a collection from before manifests), only while the client
        has seen no counter.

        A manifest that fails its check is ``collection_tampered`` only when ``proves_key()`` shows the key is
        right (a stored blob opens under it); else the caller simply holds another key, and that is the one
        opaque InvalidCiphertext a wrong key always gets."""
        if stored is None:
            if min_counter > 0:
                raise CollectionStateError(ErrorCode.STALE_COLLECTION)
            return from_blobs(blobs)
        try:
            manifest = self.open(stored)
        except CollectionStateError:
            if proves_key():
                raise
            raise InvalidCiphertext() from None
        if manifest.counter < min_counter:
            raise CollectionStateError(ErrorCode.STALE_COLLECTION)
        return manifest

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._mac_key, _DOMAIN + body, hashlib.sha256).digest()


def claimed_counter(blob: bytes) -> int:
    """The counter a sealed manifest claims, read without its key (the store's compare-and-swap needs it; only a
    key holder can check that the rest is authentic). ValueError if it does not parse."""
    if len(blob) > MAX_MANIFEST_BYTES:
        raise ValueError("not a collection manifest")
    return CollectionManifest.from_json(blob[MAC_BYTES:]).counter


def from_blobs(blobs: Iterable[Blob]) -> CollectionManifest:
    """The state a manifest-less collection's blobs describe: one version per document, chunks 0..n-1."""
    versions: dict[str, set[int]] = {}
    indices: dict[str, list[int]] = {}
    for doc_id, version, index in blobs:
        versions.setdefault(doc_id, set()).add(version)
        indices.setdefault(doc_id, []).append(index)
    documents = {}
    for doc_id, seen in versions.items():
        if len(seen) != 1 or sorted(indices[doc_id]) != list(range(len(indices[doc_id]))):
            raise CollectionStateError(ErrorCode.COLLECTION_TAMPERED)
        documents[doc_id] = DocumentEntry(next(iter(seen)), len(indices[doc_id]))
    return CollectionManifest(0, documents)


def proves_key(cipher: CollectionCipher, documents: Sequence[DocumentInfo]) -> Callable[[], bool]:
    """For ``ManifestKey.current``: whether a stored document's metadata opens under the request's key."""
    first = documents[0] if documents else None
    return lambda: first is not None and cipher.opens("meta", first.doc_id, first.version, 0, first.sealed_meta)


def check_blobs(manifest: CollectionManifest, blobs: Iterable[Blob]) -> None:
    """All or nothing: the loaded blobs must be exactly the manifest's (none missing, extra or repeated)."""
    loaded = list(blobs)
    if len(loaded) != len(set(loaded)) or set(loaded) != manifest.blobs():
        raise CollectionStateError(ErrorCode.COLLECTION_TAMPERED)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise ValueError("not a count")
    return value
