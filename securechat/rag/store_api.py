"""The document store's contract and records: ciphertext, opaque ids, sizes and counts. Never plaintext or keys.

One row per collection (owner tenant, generation, its authenticated manifest and that manifest's counter), per
document (latest version only, its sealed metadata) and per chunk (its sealed text and sealed embedding).
Ingests are versioned: ``begin_ingest`` hands out the next version of the collection (atomically; concurrent
ingests get distinct versions), and the worker seals every blob of that ingest under it (the version is in each
blob's AAD). The manifest (``securechat.rag.manifest``), which only the key holder can write, decides which
documents and versions make up the collection: ``commit`` and ``delete_document`` store a change together with
the manifest that describes the result, in one transaction, and only if that manifest's counter is the stored
one plus one (else ``COLLECTION_CHANGED``: another writer came first; the writer reads the state again and
retries), so concurrent writers lose nothing and blobs and manifest never disagree. Every change moves the
collection's generation on; workers rebuild their cached index when it moved.

``DocumentStore`` is the contract; ``securechat.rag.store`` implements it in SQL on either database backend
(an SQLite file on one node, PostgreSQL for a cluster). Its methods are synchronous; the Serve deployment that
owns the store calls them off its event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from securechat.errors import ErrorCode


class StoreError(Exception):
    """A refusal with a content-free code (the HTTP layer maps it to a status)."""

    def __init__(self, code: ErrorCode | str) -> None:
        super().__init__(str(ErrorCode(code).value))
        self.code = ErrorCode(code)  # rebuilt from its value when the error crosses a process (pickling)


@dataclass(frozen=True, slots=True)
class StoreLimits:
    """The tenant's policy, in numbers the host may see."""

    max_documents: int
    max_chunks: int


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    collection_id: str
    tenant_id: str
    created_at: float
    generation: int
    num_documents: int
    num_chunks: int
    num_bytes: int


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    doc_id: str
    version: int
    created_at: float
    num_chunks: int
    num_bytes: int
    sealed_meta: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SealedChunk:
    index: int
    sealed_text: bytes = field(repr=False)
    sealed_embedding: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SealedDocument:
    doc_id: str
    sealed_meta: bytes = field(repr=False)
    chunks: tuple[SealedChunk, ...] = field(repr=False)

    @property
    def num_bytes(self) -> int:
        return len(self.sealed_meta) + sum(len(c.sealed_text) + len(c.sealed_embedding) for c in self.chunks)


@dataclass(frozen=True, slots=True)
class StoredChunk:
    doc_id: str
    version: int
    index: int
    sealed_text: bytes = field(repr=False)
    sealed_embedding: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoadedCollection:
    generation: int
    chunks: tuple[StoredChunk, ...] = field(repr=False)
    manifest: bytes | None = field(default=None, repr=False)  # None: a collection from before manifests


@dataclass(frozen=True, slots=True)
class DocumentListing:
    documents: tuple[DocumentInfo, ...]
    manifest: bytes | None = field(default=None, repr=False)  # read in the same transaction as the documents


@dataclass(frozen=True, slots=True)
class ManifestUpdate:
    """A new manifest and its counter (which the store can read but not check: only the key holder can)."""

    manifest: bytes = field(repr=False)
    counter: int


class DocumentStore(ABC):
    @abstractmethod
    def create_collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        """A new empty collection; COLLECTION_EXISTS if the id is taken."""

    @abstractmethod
    def collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        """The collection if ``tenant_id`` owns it: UNKNOWN_COLLECTION, or FORBIDDEN for another tenant's."""

    @abstractmethod
    def list_collections(self, tenant_id: str) -> list[CollectionInfo]: ...

    @abstractmethod
    def delete_collection(self, tenant_id: str, collection_id: str) -> None:
        """Every blob of the collection goes."""

    @abstractmethod
    def list_documents(self, tenant_id: str, collection_id: str) -> DocumentListing: ...

    @abstractmethod
    def delete_document(self, tenant_id: str, collection_id: str, doc_id: str, update: ManifestUpdate) -> None:
        """Every version and chunk of the document goes and ``update`` becomes the manifest (UNKNOWN_DOCUMENT if
        there is no such document, COLLECTION_CHANGED if the stored counter is not ``update.counter - 1``)."""

    @abstractmethod
    def begin_ingest(self, tenant_id: str, collection_id: str) -> int:
        """The version this ingest seals its blobs under (distinct for every call)."""

    @abstractmethod
    def commit(
        self,
        tenant_id: str,
        collection_id: str,
        version: int,
        documents: Sequence[SealedDocument],
        limits: StoreLimits,
        update: ManifestUpdate,
    ) -> None:
        """Store ``documents`` under ``version`` (each replacing that document's rows) and ``update`` as the
        manifest, atomically, within the tenant's limits (else nothing is written: TOO_MANY_DOCUMENTS /
        TOO_MANY_CHUNKS) and only after the stored counter (else COLLECTION_CHANGED)."""

    @abstractmethod
    def load(self, tenant_id: str, collection_id: str) -> LoadedCollection:
        """Every stored chunk, the manifest and the generation they belong to, as of one moment."""

    @abstractmethod
    def generation(self, tenant_id: str, collection_id: str) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources."""
