"""The sealed request bodies of the collection modes: what travels inside an envelope, parsed strictly.

Modes (the envelope header's ``mode``, bound into its AAD): ``rag`` (chat over a collection), ``ingest`` (add
documents), ``search`` (retrieve only), ``embed`` (vectors for texts). Each body carries the collection key when
it needs one; the host never sees it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Final

from securechat.envelope import is_valid_id
from securechat.rag.keys import CollectionKey, InvalidCollectionKey
from securechat.request_body import InvalidRequestBody, RequestBody

MAX_TOP_K: Final = 20
DEFAULT_TOP_K: Final = 4
MAX_DOCUMENTS_PER_INGEST: Final = 64
MAX_EMBED_INPUTS: Final = 256
MAX_DOCUMENT_B64_CHARS: Final = 24 << 20  # a document's bytes, base64 (the worker's own size limit is lower)


@dataclass(frozen=True, slots=True)
class CollectionRef:
    """Which collection, its key, and the newest state of it the client has seen (its manifest's counter):
    the worker refuses to use an older one."""

    collection_id: str
    key: CollectionKey = field(repr=False)
    min_counter: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.collection_id, "key": self.key.to_b64(), "counter": self.min_counter}

    @classmethod
    def from_dict(cls, data: Any) -> CollectionRef:
        if not isinstance(data, dict) or not is_valid_id(data.get("id")):
            raise InvalidRequestBody("invalid request body")
        counter = data.get("counter", 0)
        if not isinstance(counter, int) or isinstance(counter, bool) or not 0 <= counter < 2**53:
            raise InvalidRequestBody("invalid request body")
        try:
            return cls(data["id"], CollectionKey.from_b64(data.get("key")), counter)
        except InvalidCollectionKey:
            raise InvalidRequestBody("invalid request body") from None


@dataclass(frozen=True, slots=True)
class RagBody:
    request: RequestBody
    collection: CollectionRef
    top_k: int = DEFAULT_TOP_K

    def to_bytes(self) -> bytes:
        data = json.loads(self.request.to_bytes())
        data.update(collection=self.collection.to_dict(), top_k=self.top_k)
        return _dump(data)

    @classmethod
    def from_bytes(cls, data: bytes, max_new_tokens_limit: int) -> RagBody:
        raw = _load(data)
        request = RequestBody.from_bytes(data, max_new_tokens_limit)
        return cls(request, CollectionRef.from_dict(raw.get("collection")), _top_k(raw.get("top_k")))


@dataclass(frozen=True, slots=True)
class DocumentInput:
    """A document to index: text (plain text, markdown) or bytes (PDF, Word, HTML: parsed in the worker)."""

    doc_id: str
    filename: str = field(repr=False)
    media_type: str
    text: str = field(default="", repr=False)
    data: bytes | None = field(default=None, repr=False)

    @property
    def num_bytes(self) -> int:
        return len(self.data) if self.data is not None else len(self.text.encode())

    def to_dict(self) -> dict[str, Any]:
        item: dict[str, Any] = {"doc_id": self.doc_id, "filename": self.filename, "media_type": self.media_type}
        if self.data is not None:
            item["data"] = base64.b64encode(self.data).decode()
        else:
            item["text"] = self.text
        return item

    @classmethod
    def from_dict(cls, item: object) -> DocumentInput:
        if not isinstance(item, dict) or not is_valid_id(item.get("doc_id")):
            raise InvalidRequestBody("invalid request body")
        filename, media_type = item.get("filename", ""), item.get("media_type")
        text, data = item.get("text"), item.get("data")
        if not isinstance(filename, str) or not isinstance(media_type, str) or (text is None) == (data is None):
            raise InvalidRequestBody("invalid request body")
        if data is not None:
            if not isinstance(data, str) or len(data) > MAX_DOCUMENT_B64_CHARS:
                raise InvalidRequestBody("invalid request body")
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequestBody("invalid request body") from None
            return cls(item["doc_id"], filename[:255], media_type, data=raw)
        if not isinstance(text, str):
            raise InvalidRequestBody("invalid request body")
        return cls(item["doc_id"], filename[:255], media_type, text)


@dataclass(frozen=True, slots=True)
class IngestBody:
    collection: CollectionRef
    documents: tuple[DocumentInput, ...]

    def to_bytes(self) -> bytes:
        docs = [document.to_dict() for document in self.documents]
        return _dump({"collection": self.collection.to_dict(), "documents": docs})

    @classmethod
    def from_bytes(cls, data: bytes) -> IngestBody:
        raw = _load(data)
        items = raw.get("documents")
        if not isinstance(items, list) or not 0 < len(items) <= MAX_DOCUMENTS_PER_INGEST:
            raise InvalidRequestBody("invalid request body")
        documents = [DocumentInput.from_dict(item) for item in items]
        if len({d.doc_id for d in documents}) != len(documents):
            raise InvalidRequestBody("invalid request body")
        return cls(CollectionRef.from_dict(raw.get("collection")), tuple(documents))


@dataclass(frozen=True, slots=True)
class SearchBody:
    collection: CollectionRef
    query: str = field(repr=False)
    top_k: int = DEFAULT_TOP_K

    def to_bytes(self) -> bytes:
        return _dump({"collection": self.collection.to_dict(), "query": self.query, "top_k": self.top_k})

    @classmethod
    def from_bytes(cls, data: bytes) -> SearchBody:
        raw = _load(data)
        query = raw.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequestBody("invalid request body")
        return cls(CollectionRef.from_dict(raw.get("collection")), query, _top_k(raw.get("top_k")))


@dataclass(frozen=True, slots=True)
class EmbedBody:
    inputs: tuple[str, ...] = field(repr=False)

    def to_bytes(self) -> bytes:
        return _dump({"inputs": list(self.inputs)})

    @classmethod
    def from_bytes(cls, data: bytes) -> EmbedBody:
        inputs = _load(data).get("inputs")
        if (
            not isinstance(inputs, list)
            or not 0 < len(inputs) <= MAX_EMBED_INPUTS
            or not all(isinstance(text, str) for text in inputs)
        ):
            raise InvalidRequestBody("invalid request body")
        return cls(tuple(inputs))


def _top_k(value: Any) -> int:
    top_k = DEFAULT_TOP_K if value is None else value
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidRequestBody("invalid request body")
    return top_k


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _load(data: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(data)
    except ValueError:
        raise InvalidRequestBody("invalid request body") from None
    if not isinstance(raw, dict):
        raise InvalidRequestBody("invalid request body")
    return raw
