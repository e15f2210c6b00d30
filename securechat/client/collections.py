"""Collections from the client's side: keys made and kept here, documents sealed here, answers opened here.

The service only ever holds a collection's opaque id and sealed blobs. Creating a collection asks the service
for an id and makes a 256-bit key in the local keyring; adding documents seals their text (and the key) to the
verified workers, which chunk, embed and seal them under keys derived from it; listing documents opens their
sealed metadata (file names, sizes) here; deleting a collection also forgets its key (crypto-shredding).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from securechat.client.errors import ClientError, ServiceError
from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.rag.bodies import DEFAULT_TOP_K, CollectionRef, DocumentInput, IngestBody, SearchBody
from securechat.rag.keys import CollectionKey
from securechat.rag.sealing import CollectionCipher

if TYPE_CHECKING:
    from securechat.client.sdk import SecureChatClient

MEDIA_TYPES_BY_SUFFIX: Final = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
}


class DocumentError(ClientError):
    """A document refused before anything is sent (``code`` is one of the service's own codes)."""

    def __init__(self, code: ErrorCode, filename: str) -> None:
        super().__init__(f"{filename}: {code.value}")
        self.code = code


@dataclass(frozen=True, slots=True)
class DocumentFile:
    filename: str
    text: str = field(repr=False)
    media_type: str = "text/plain"

    @classmethod
    def from_path(cls, path: Path) -> DocumentFile:
        media_type = MEDIA_TYPES_BY_SUFFIX.get(path.suffix.lower())
        if media_type is None:
            raise DocumentError(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE, path.name)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise DocumentError(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE, path.name) from None
        except OSError:
            raise ClientError(f"cannot read {path}") from None
        return cls.checked(path.name, text, media_type)

    @classmethod
    def checked(cls, filename: str, text: str, media_type: str) -> DocumentFile:
        if media_type not in MEDIA_TYPES_BY_SUFFIX.values():
            raise DocumentError(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE, filename)
        if not text.strip():
            raise DocumentError(ErrorCode.DOCUMENT_EMPTY, filename)
        return cls(filename, text, media_type)


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


class CollectionsClient:
    def __init__(self, client: SecureChatClient) -> None:
        self._client = client

    @property
    def _tenant(self) -> str:
        return self._client.config.tenant_id

    def create(self, name: str = "") -> Collection:
        data = self._client.request_json("POST", "/v1/collections", json={"tenant_id": self._tenant})
        collection = _collection(data, name, has_key=True)
        self._client.keyring.add(collection.collection_id, self._tenant, CollectionKey.generate(), name)
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
        """Seal ``files`` to the workers, which index them; a given ``doc_id`` replaces that document."""
        ids = list(doc_ids) if doc_ids is not None else [f"doc_{uuid.uuid4().hex}" for _ in files]
        if len(ids) != len(files):
            raise ValueError("one doc_id per file")
        documents = tuple(
            DocumentInput(doc_id, f.filename, f.media_type, f.text) for doc_id, f in zip(ids, files, strict=True)
        )
        body = IngestBody(self._ref(collection_id), documents).to_bytes()
        path = f"/v1/collections/{collection_id}/documents"
        with self._client.open_sealed("ingest", body, path) as opened:
            result = opened.result()
        written = result.get("documents")
        if not isinstance(written, list):
            raise ServiceError(200, "invalid_response")
        return written

    def documents(self, collection_id: str) -> list[Document]:
        data = self._client.request_json(
            "GET", f"/v1/collections/{collection_id}/documents", params={"tenant_id": self._tenant}
        )
        cipher = CollectionCipher(self._ref(collection_id).key, self._tenant, collection_id)
        documents = []
        for item in _items(data, "documents"):
            try:
                meta = cipher.open_meta(item["doc_id"], item["version"], base64.b64decode(item["sealed_meta"]))
            except (KeyError, TypeError, binascii.Error):
                raise InvalidCiphertext() from None
            documents.append(
                Document(
                    item["doc_id"],
                    item["version"],
                    str(meta.get("filename", "")),
                    str(meta.get("media_type", "")),
                    item["num_chunks"],
                    item["num_bytes"],
                    item["created_at"],
                )
            )
        return documents

    def delete_document(self, collection_id: str, doc_id: str) -> None:
        self._client.request_json(
            "DELETE", f"/v1/collections/{collection_id}/documents/{doc_id}", params={"tenant_id": self._tenant}
        )

    def search(self, collection_id: str, query: str, top_k: int = DEFAULT_TOP_K) -> list[SearchHit]:
        body = SearchBody(self._ref(collection_id), query, top_k).to_bytes()
        with self._client.open_sealed("search", body, f"/v1/collections/{collection_id}/search") as opened:
            result = opened.result()
        try:
            return [
                SearchHit(str(r["doc_id"]), int(r["chunk_index"]), float(r["score"]), str(r["text"]))
                for r in result["results"]
            ]
        except (KeyError, TypeError, ValueError):
            raise ServiceError(200, "invalid_response") from None

    def _ref(self, collection_id: str) -> CollectionRef:
        return CollectionRef(collection_id, self._client.keyring.get(collection_id).key)


def _items(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ServiceError(200, "invalid_response")
    return items


def _collection(item: Any, name: str, *, has_key: bool) -> Collection:
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
