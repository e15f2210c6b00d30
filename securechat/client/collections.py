"""Collections from the client's side: keys made and kept here, documents sealed here, answers opened here.

The service only ever holds a collection's opaque id and sealed blobs. Creating a collection asks the service
for an id and makes a 256-bit key in the local keyring; adding documents seals their text (and the key) to the
verified workers, which chunk, embed and seal them under keys derived from it; listing documents checks the
collection's authenticated manifest and opens their sealed metadata (file names, sizes) here; deleting a
document writes the next manifest here, the key holder being the only one who can; deleting a collection also
forgets its key (crypto-shredding).

Every request about a collection carries the newest state counter this keyring has seen (``CollectionRef``),
and every answer's counter moves it on (``saw_state``), so a store rolled back below it is refused
(``stale_collection``), by the workers and by this client.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from securechat.client.config import ClientConfig
from securechat.client.errors import ClientError, ServiceError
from securechat.client.keyring import Keyring, KeyringError
from securechat.client.stream import CompletionStream
from securechat.envelope import is_valid_id
from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.rag.bodies import (
    DEFAULT_TOP_K,
    MAX_DOCUMENTS_PER_INGEST,
    CollectionRef,
    DocumentInput,
    IngestBody,
    SearchBody,
)
from securechat.rag.documents.model import BINARY_TYPES, SUFFIXES, TEXT_TYPES
from securechat.rag.keys import CollectionKey
from securechat.rag.manifest import CollectionManifest, CollectionStateError, ManifestKey, proves_key
from securechat.rag.sealing import CollectionCipher
from securechat.rag.store_api import DocumentInfo
from securechat.stream import FinalEvent


class ServiceSession(Protocol):
    """What collections need of the SDK's client (``SecureChatClient`` is one): the tenant's config and keyring,
    plain JSON calls, and sealed operations to the verified workers. A Protocol, so this module and the SDK do
    not import each other."""

    config: ClientConfig
    keyring: Keyring

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def open_sealed(
        self,
        mode: str,
        body: bytes,
        path: str,
        fields: dict[str, Any] | None = None,
        on_final: Callable[[FinalEvent], None] | None = None,
    ) -> CompletionStream: ...


# One ingest's documents, in bytes: a sealed ingest is ~1.8x its documents (base64 twice), so 1 MiB of them fits
# the gateway's default 4 MiB body limit with room to spare; a single larger document is sent on its own (the
# service configuration guarantees its body limit fits one document of the workers' size limit).
INGEST_BATCH_BYTES: Final = 1 << 20
MAX_DELETE_ATTEMPTS: Final = 8  # each retry follows another writer that moved the collection on first
MEDIA_TYPES_BY_SUFFIX: Final = SUFFIXES  # .txt .md (text); .pdf .docx .html (bytes, parsed in the worker)


class DocumentError(ClientError):
    """A document refused before anything is sent (``code`` is one of the service's own codes)."""

    def __init__(self, code: ErrorCode, filename: str) -> None:
        super().__init__(f"{filename}: {code.value}")
        self.code = code


@dataclass(frozen=True, slots=True)
class DocumentFile:
    """A document to add: text (plain text, markdown), or the bytes of a PDF, Word or HTML file, which travel
    sealed as they are and are parsed only inside a worker."""

    filename: str
    text: str = field(default="", repr=False)
    media_type: str = "text/plain"
    data: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_path(cls, path: Path) -> DocumentFile:
        media_type = MEDIA_TYPES_BY_SUFFIX.get(path.suffix.lower())
        if media_type is None:
            raise DocumentError(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE, path.name)
        try:
            raw = path.read_bytes()
        except OSError:
            raise ClientError(f"cannot read {path}") from None
        if media_type in BINARY_TYPES:
            return cls.binary(path.name, raw, media_type)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DocumentError(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE, path.name) from None
        return cls.checked(path.name, text, media_type)

    @classmethod
    def checked(cls, filename: str, text: str, media_type: str) -> DocumentFile:
        if media_type not in TEXT_TYPES:
            raise DocumentError(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE, filename)
        if not text.strip():
            raise DocumentError(ErrorCode.DOCUMENT_EMPTY, filename)
        return cls(filename, text, media_type)

    @classmethod
    def binary(cls, filename: str, data: bytes, media_type: str) -> DocumentFile:
        if media_type not in BINARY_TYPES:
            raise DocumentError(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE, filename)
        if not data:
            raise DocumentError(ErrorCode.DOCUMENT_EMPTY, filename)
        return cls(filename, "", media_type, data)


@dataclass(frozen=True, slots=True)
class Collection:
    collection_id: str
    name: str
    created_at: float
    num_documents: int
    num_chunks: int
    num_bytes: int
    has_key: bool  # False: this keyring cannot read it (another machine's, or a forgotten key)


@dataclass(frozen=True, slots=True)
class Document:
    doc_id: str
    version: int
    filename: str
    media_type: str
    num_chunks: int
    num_bytes: int
    created_at: float


@dataclass(frozen=True, slots=True)
class SearchHit:
    doc_id: str
    chunk_index: int
    score: float
    text: str = field(repr=False)
    page: int | None = None  # PDF: the page the excerpt is on
    heading: str | None = field(default=None, repr=False)  # the section's heading


class CollectionsClient:
    def __init__(self, client: ServiceSession) -> None:
        self._client = client

    @property
    def _tenant(self) -> str:
        return self._client.config.tenant_id

    def create(self, name: str = "") -> Collection:
        """A new collection: the service names it, the key is made here. An id the keyring already holds is
        refused (``duplicate_collection_id``), never written over: that would make its documents unreadable."""
        data = self._client.request_json("POST", "/v1/collections", json={"tenant_id": self._tenant})
        collection = _collection(data, name, has_key=True)
        if any(entry.collection_id == collection.collection_id for entry in self._client.keyring.entries()):
            raise ServiceError(200, "duplicate_collection_id")
        try:
            self._client.keyring.add(collection.collection_id, self._tenant, CollectionKey.generate(), name)
        except KeyringError:  # made by another process of this user in between: the same refusal
            raise ServiceError(200, "duplicate_collection_id") from None
        return collection

    def list_all(self) -> list[Collection]:
        data = self._client.request_json("GET", "/v1/collections", params={"tenant_id": self._tenant})
        names = {e.collection_id: e.name for e in self._client.keyring.entries() if e.tenant_id == self._tenant}
        return [
            _collection(item, names.get(item["collection_id"], ""), has_key=item["collection_id"] in names)
            for item in _items(data, "collections")
        ]

    def delete(self, collection_id: str, *, forget_key: bool = True) -> None:
        """Delete every blob; and forget the key, so no copy of them anywhere can be read again."""
        self._client.request_json("DELETE", f"/v1/collections/{collection_id}", params={"tenant_id": self._tenant})
        if forget_key:
            self._client.keyring.remove(collection_id)

    def add(
        self, collection_id: str, files: Sequence[DocumentFile], doc_ids: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Seal ``files`` to the workers, which index them; a given ``doc_id`` replaces that document.

        Files go in batches (``add_in_batches``); each batch is all or nothing, and a refused one raises after
        the batches before it were added."""
        return [item for batch in self.add_in_batches(collection_id, files, doc_ids) for item in batch]

    def add_in_batches(
        self, collection_id: str, files: Sequence[DocumentFile], doc_ids: Sequence[str] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Ingest ``files`` in order, as few ingests as keep each under ``INGEST_BATCH_BYTES`` of documents (a
        larger file goes alone) and ``MAX_DOCUMENTS_PER_INGEST`` files, yielding each one's result as it lands."""
        ids = list(doc_ids) if doc_ids is not None else [f"doc_{uuid.uuid4().hex}" for _ in files]
        if len(ids) != len(files):
            raise ValueError("one doc_id per file")
        pairs = zip(ids, files, strict=True)
        documents = [DocumentInput(doc_id, f.filename, f.media_type, f.text, f.data) for doc_id, f in pairs]
        for batch in _batches(documents):
            yield self._ingest(collection_id, batch)

    def _ingest(self, collection_id: str, documents: tuple[DocumentInput, ...]) -> list[dict[str, Any]]:
        body = IngestBody(self.ref(collection_id), documents).to_bytes()
        path = f"/v1/collections/{collection_id}/documents"
        with self._client.open_sealed("ingest", body, path) as opened:
            result = opened.result()
        written = result.get("documents")
        if not isinstance(written, list):
            raise ServiceError(200, "invalid_response")
        self.saw_state(collection_id, result.get("counter"))
        return written

    def documents(self, collection_id: str) -> list[Document]:
        """The collection's documents as its authenticated manifest lists them, with their sealed metadata
        (file name, type, size in bytes, number of chunks, as the worker that indexed them wrote it). A listing
        that is not what the manifest says, or older than this keyring has seen, raises ServiceError with code
        ``collection_tampered`` or ``stale_collection``."""
        listing = self._listing(collection_id)
        manifest = listing.manifest
        listed = {(info.doc_id, info.version, info.num_chunks) for info in listing.documents}
        if listed != {(doc_id, e.version, e.num_chunks) for doc_id, e in manifest.documents.items()}:
            raise ServiceError(200, ErrorCode.COLLECTION_TAMPERED.value)  # hidden, extra or mixed documents
        cipher = CollectionCipher(self.ref(collection_id).key, self._tenant, collection_id)
        documents = []
        for info in listing.documents:
            meta = cipher.open_meta(info.doc_id, info.version, info.sealed_meta)
            documents.append(
                Document(
                    info.doc_id,
                    info.version,
                    str(meta.get("filename", "")),
                    str(meta.get("media_type", "")),
                    _meta_count(meta, "num_chunks"),
                    _meta_count(meta, "num_bytes"),
                    info.created_at,
                )
            )
        self.saw_state(collection_id, manifest.counter)
        return documents

    def delete_document(self, collection_id: str, doc_id: str) -> None:
        """Delete a document: the next manifest, without it, is written here and stored with the deletion. If
        another writer moved the collection on meanwhile (409 ``collection_changed``), read it again and retry."""
        path = f"/v1/collections/{collection_id}/documents/{doc_id}"
        for attempt in range(MAX_DELETE_ATTEMPTS):
            manifest = self._listing(collection_id).manifest
            if doc_id not in manifest.documents:
                raise ServiceError(404, ErrorCode.UNKNOWN_DOCUMENT.value)
            following = manifest.without(doc_id)
            sealed = base64.b64encode(self._manifest_key(collection_id).seal(following)).decode()
            try:
                self._client.request_json("DELETE", path, json={"tenant_id": self._tenant, "manifest": sealed})
            except ServiceError as error:
                if error.code == ErrorCode.COLLECTION_CHANGED and attempt + 1 < MAX_DELETE_ATTEMPTS:
                    continue
                raise
            self.saw_state(collection_id, following.counter)
            return

    def search(self, collection_id: str, query: str, top_k: int = DEFAULT_TOP_K) -> list[SearchHit]:
        body = SearchBody(self.ref(collection_id), query, top_k).to_bytes()
        with self._client.open_sealed("search", body, f"/v1/collections/{collection_id}/search") as opened:
            result = opened.result()
        try:
            hits = [
                SearchHit(
                    str(r["doc_id"]),
                    int(r["chunk_index"]),
                    float(r["score"]),
                    str(r["text"]),
                    r.get("page") if isinstance(r.get("page"), int) else None,
                    r.get("heading") if isinstance(r.get("heading"), str) else None,
                )
                for r in result["results"]
            ]
        except (KeyError, TypeError, ValueError):
            raise ServiceError(200, "invalid_response") from None
        self.saw_state(collection_id, result.get("counter"))
        return hits

    def ref(self, collection_id: str) -> CollectionRef:
        """What a sealed request names: the collection, its key, and the newest state this keyring has seen."""
        entry = self._client.keyring.get(collection_id)
        return CollectionRef(collection_id, entry.key, entry.counter)

    def saw_state(self, collection_id: str, counter: object) -> None:
        """Keep the newest state counter an authenticated answer reported (it never moves back)."""
        if isinstance(counter, int) and not isinstance(counter, bool) and counter >= 0:
            self._client.keyring.advance(collection_id, counter)

    def _manifest_key(self, collection_id: str) -> ManifestKey:
        return ManifestKey(self.ref(collection_id).key, self._tenant, collection_id)

    def _listing(self, collection_id: str) -> _CheckedListing:
        """The service's document listing and the manifest it holds, checked: authentic, and not older than
        the state this keyring has seen (else ServiceError ``collection_tampered`` / ``stale_collection``)."""
        data = self._client.request_json(
            "GET", f"/v1/collections/{collection_id}/documents", params={"tenant_id": self._tenant}
        )
        try:
            infos = tuple(_document_info(item) for item in _items(data, "documents"))
            stored = data.get("manifest")
            manifest_bytes = None if stored is None else base64.b64decode(stored, validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise ServiceError(200, "invalid_response") from None
        ref = self.ref(collection_id)
        blobs = [(info.doc_id, info.version, index) for info in infos for index in range(info.num_chunks)]
        cipher = CollectionCipher(ref.key, self._tenant, collection_id)
        try:
            manifest = self._manifest_key(collection_id).current(
                manifest_bytes, ref.min_counter, blobs, proves_key(cipher, infos)
            )
        except CollectionStateError as refused:  # answered by the service, refused here: as a worker would
            raise ServiceError(200, refused.code.value) from None
        return _CheckedListing(infos, manifest)


@dataclass(frozen=True, slots=True)
class _CheckedListing:
    documents: tuple[DocumentInfo, ...]
    manifest: CollectionManifest


def _document_info(item: dict[str, Any]) -> DocumentInfo:
    if not is_valid_id(item["doc_id"]):
        raise ValueError("invalid document id")
    return DocumentInfo(
        item["doc_id"],
        _count(item["version"]),
        float(item["created_at"]),
        _count(item["num_chunks"]),
        _count(item["num_bytes"]),
        base64.b64decode(item["sealed_meta"], validate=True),
    )


def _batches(documents: Sequence[DocumentInput]) -> Iterator[tuple[DocumentInput, ...]]:
    batch: list[DocumentInput] = []
    size = 0
    for document in documents:
        full = len(batch) == MAX_DOCUMENTS_PER_INGEST or size + document.num_bytes > INGEST_BATCH_BYTES
        if batch and full:
            yield tuple(batch)
            batch, size = [], 0
        batch.append(document)
        size += document.num_bytes
    if batch:
        yield tuple(batch)


def _meta_count(meta: dict[str, Any], name: str) -> int:
    try:
        return _count(meta[name])
    except (KeyError, ValueError):
        raise InvalidCiphertext() from None  # authentic but not what a worker writes: refuse, do not guess


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("not a count")
    return value


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ServiceError(200, "invalid_response")
    return items


def _collection(item: Any, name: str, *, has_key: bool) -> Collection:
    if not isinstance(item, dict) or not is_valid_id(item.get("collection_id")):
        raise ServiceError(200, "invalid_response")  # a malformed id would also make the keyring unreadable
    try:
        return Collection(
            item["collection_id"],
            name,
            float(item["created_at"]),
            int(item["num_documents"]),
            int(item["num_chunks"]),
            int(item["num_bytes"]),
            has_key,
        )
    except (KeyError, TypeError, ValueError):
        raise ServiceError(200, "invalid_response") from None
