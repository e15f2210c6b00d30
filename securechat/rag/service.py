"""The worker's side of collections: ingest, retrieve, search and embed, with plaintext only in this process.

``RagService`` is plain Python; the worker replica builds it with an embedder and an ``AsyncDocumentStore`` (the
store deployment's handle in production, ``LocalDocumentStore`` in tests). Everything that leaves it for the store is
sealed under the collection key (``sealing.py``); what comes back is opened here, checked, and kept only in the
bounded in-memory cache. Model work (embedding) runs off the event loop.

The collection's state is its authenticated manifest (``manifest.py``): an ingest writes the next one together
with its blobs (compare-and-swap on the counter, retried when another ingest came first), and a retrieval uses
the blobs only if they are exactly the manifest's and the manifest is at least as new as the client has seen.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from securechat.errors import ErrorCode, InvalidCiphertext
from securechat.rag.bodies import CollectionRef, DocumentInput, IngestBody
from securechat.rag.cache import CollectionCache
from securechat.rag.chunking import ChunkRecord, LocatedChunk, chunk_sections
from securechat.rag.documents.model import BINARY_TYPES, MEDIA_TYPES, DocumentRefused, ParsedDocument
from securechat.rag.documents.parsers import parse
from securechat.rag.documents.sandbox import ParseBudget, parse_in_child
from securechat.rag.documents.sniff import check_kind
from securechat.rag.embedder import Embedder
from securechat.rag.index import ChunkRef, ExactIndex, Hit
from securechat.rag.manifest import (
    Blob,
    CollectionStateError,
    DocumentEntry,
    ManifestKey,
    check_blobs,
    proves_key,
)
from securechat.rag.sealing import CollectionCipher
from securechat.rag.store import (
    DocumentInfo,
    LoadedCollection,
    ManifestUpdate,
    SealedChunk,
    SealedDocument,
    StoreError,
    StoreLimits,
)
from securechat.rag.store_client import AsyncDocumentStore

MAX_COMMIT_ATTEMPTS: Final = 8  # concurrent ingests into one collection each retry after another came first


DocumentRejected = DocumentRefused  # a document the worker will not index (a content-free code)


@dataclass(frozen=True, slots=True)
class RagOptions:
    max_document_bytes: int
    chunk_tokens: int
    overlap_tokens: int
    cache_bytes: int
    cache_idle_s: float
    retrieval: str = "hybrid"  # or "dense": the dense ranking alone (benchmarks compare both)
    parse_budget: ParseBudget = field(default_factory=ParseBudget)  # per PDF, Word or HTML document


@dataclass(slots=True)
class RetrievalTimings:
    """Where a retrieval's time went (content-free, reported in the sealed trailer and by benchmarks)."""

    load_ms: float = 0.0  # fetch + decrypt + index build; 0 when the cache held the collection
    embed_ms: float = 0.0
    search_ms: float = 0.0
    cached: bool = False
    num_chunks: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "load_ms": round(self.load_ms, 3),
            "embed_ms": round(self.embed_ms, 3),
            "search_ms": round(self.search_ms, 3),
            "cached": self.cached,
            "num_chunks": self.num_chunks,
        }


@dataclass(slots=True)
class Retrieval:
    hits: list[Hit] = field(default_factory=list)
    timings: RetrievalTimings = field(default_factory=RetrievalTimings)
    counter: int = 0  # the collection state answered from: the client keeps it as its new floor


@dataclass(frozen=True, slots=True)
class IngestTicket:
    """The ingest's envelope, as the manifest remembers it (so a replay to another worker is refused)."""

    request_id: str
    expires_at: int

    @classmethod
    def new(cls, ttl_s: int = 600) -> IngestTicket:
        """A ticket for an ingest run in-process, without an envelope (benchmarks, tools)."""
        return cls(uuid.uuid4().hex, int(time.time()) + ttl_s)


class RagService:
    def __init__(self, embedder: Embedder, store: AsyncDocumentStore, options: RagOptions) -> None:
        self.embedder = embedder
        self.store = store
        self.options = options
        self.cache = CollectionCache(options.cache_bytes, options.cache_idle_s)
        self.last_parse_ms = 0.0  # the last ingest's stages (benchmarks read them)
        self.last_embed_ms = 0.0

    # -- ingest ----------------------------------------------------------------------------------------------
    async def ingest(
        self, tenant_id: str, body: IngestBody, limits: StoreLimits, ticket: IngestTicket
    ) -> dict[str, Any]:
        """Chunk, embed, seal and store ``body.documents`` with the next manifest; raises DocumentRejected,
        StoreError or CollectionStateError (stale, tampered, or this ingest already applied)."""
        for document in body.documents:
            self._check(document)
        ref = body.collection
        version = await self.store.begin_ingest(tenant_id, ref.collection_id)
        cipher = CollectionCipher(ref.key, tenant_id, ref.collection_id)
        manifest_key = ManifestKey(ref.key, tenant_id, ref.collection_id)
        sealed = await asyncio.to_thread(self._prepare, body.documents, cipher, version)
        for attempt in range(MAX_COMMIT_ATTEMPTS):
            listing = await self.store.list_documents(tenant_id, ref.collection_id)
            blobs = _listed_blobs(listing.documents)
            current = manifest_key.current(
                listing.manifest, ref.min_counter, blobs, proves_key(cipher, listing.documents)
            )
            if ticket.request_id in current.ingests:
                raise CollectionStateError(ErrorCode.REPLAYED_ENVELOPE)
            # A document a later ingest already replaced (a higher version) stays as it is.
            written = [
                d for d in sealed if d.doc_id not in current.documents or current.documents[d.doc_id].version < version
            ]
            entries = {d.doc_id: DocumentEntry(version, len(d.chunks)) for d in written}
            following = current.after_ingest(entries, ticket.request_id, ticket.expires_at, time.time())
            update = ManifestUpdate(manifest_key.seal(following), following.counter)
            try:
                await self.store.commit(tenant_id, ref.collection_id, version, written, limits, update)
            except StoreError as refused:
                if refused.code is ErrorCode.COLLECTION_CHANGED and attempt + 1 < MAX_COMMIT_ATTEMPTS:
                    continue
                raise
            return {
                "version": version,
                "documents": [{"doc_id": d.doc_id, "num_chunks": len(d.chunks)} for d in written],
                "superseded": [d.doc_id for d in sealed if d.doc_id not in entries],
                "counter": following.counter,
            }
        raise AssertionError("unreachable")

    def _check(self, document: DocumentInput) -> None:
        if document.media_type not in MEDIA_TYPES or (document.data is not None) != (
            document.media_type in BINARY_TYPES
        ):
            raise DocumentRejected(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE)
        if document.num_bytes > self.options.max_document_bytes:
            raise DocumentRejected(ErrorCode.DOCUMENT_TOO_LARGE, self.options.max_document_bytes)
        if document.data is None and not document.text.strip():
            raise DocumentRejected(ErrorCode.DOCUMENT_EMPTY)

    def parse(self, document: DocumentInput) -> ParsedDocument:
        """The document's sections: text and markdown here, PDF, Word and HTML in a budgeted child process."""
        if document.data is None:
            return parse(document.media_type, document.text.encode(), document.filename)
        check_kind(document.media_type, document.data)
        return parse_in_child(document.media_type, document.data, document.filename, self.options.parse_budget)

    def _prepare(
        self, documents: Sequence[DocumentInput], cipher: CollectionCipher, version: int
    ) -> list[SealedDocument]:
        """Off the event loop: parse and chunk every document, embed every chunk in one pass, seal it all."""
        started = time.perf_counter()
        parsed = [self.parse(document) for document in documents]
        self.last_parse_ms = (time.perf_counter() - started) * 1000
        per_document: list[list[LocatedChunk]] = [
            chunk_sections(p.sections, self.embedder.tokenizer, self.options.chunk_tokens, self.options.overlap_tokens)
            for p in parsed
        ]
        if any(not chunks for chunks in per_document):
            raise DocumentRejected(ErrorCode.DOCUMENT_EMPTY)
        records = [
            [ChunkRecord(chunk.text, doc.title, chunk.heading, chunk.page) for chunk in chunks]
            for doc, chunks in zip(parsed, per_document, strict=True)
        ]
        started = time.perf_counter()
        vectors = self.embedder.embed([record.for_embedding for chunks in records for record in chunks])
        self.last_embed_ms = (time.perf_counter() - started) * 1000
        sealed, row = [], 0
        for document, doc, chunks in zip(documents, parsed, records, strict=True):
            sealed_chunks = []
            for index, record in enumerate(chunks):
                sealed_chunks.append(
                    SealedChunk(
                        index,
                        cipher.seal_chunk(document.doc_id, version, index, record.encode()),
                        cipher.seal_embedding(document.doc_id, version, index, vectors[row]),
                    )
                )
                row += 1
            meta = {
                "filename": document.filename,
                "media_type": document.media_type,
                "num_bytes": document.num_bytes,
                "num_chunks": len(chunks),
                "title": doc.title,
            }
            sealed.append(
                SealedDocument(document.doc_id, cipher.seal_meta(document.doc_id, version, meta), tuple(sealed_chunks))
            )
        return sealed

    # -- retrieval -------------------------------------------------------------------------------------------
    async def retrieve(self, tenant_id: str, ref: CollectionRef, query: str, top_k: int) -> Retrieval:
        """The ``top_k`` chunks nearest to ``query``. A wrong key raises InvalidCiphertext (opaque), never a
        partial result: every blob is authenticated before anything is used."""
        retrieval = Retrieval()
        index = await self._index(tenant_id, ref, retrieval.timings)
        started = time.perf_counter()
        vector = (await asyncio.to_thread(self.embedder.embed, [query]))[0]
        retrieval.timings.embed_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        hybrid = self.options.retrieval == "hybrid"
        retrieval.hits = index.search_hybrid(vector, query, top_k) if hybrid else index.search(vector, top_k)
        retrieval.timings.search_ms = (time.perf_counter() - started) * 1000
        retrieval.timings.num_chunks = len(index)
        retrieval.counter = index.counter
        return retrieval

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embedder.embed, list(texts))

    async def _index(self, tenant_id: str, ref: CollectionRef, timings: RetrievalTimings) -> ExactIndex:
        key = (tenant_id, ref.collection_id, ref.key.fingerprint())
        generation = await self.store.generation(tenant_id, ref.collection_id)
        cached = self.cache.get(key, generation)
        if cached is not None and cached.counter >= ref.min_counter:
            timings.cached = True
            return cached
        started = time.perf_counter()
        loaded = await self.store.load(tenant_id, ref.collection_id)
        index = await asyncio.to_thread(
            _open_collection,
            loaded,
            CollectionCipher(ref.key, tenant_id, ref.collection_id),
            ManifestKey(ref.key, tenant_id, ref.collection_id),
            ref.min_counter,
        )
        timings.load_ms = (time.perf_counter() - started) * 1000
        self.cache.put(key, loaded.generation, index)
        return index


def _open_collection(
    loaded: LoadedCollection, cipher: CollectionCipher, manifest_key: ManifestKey, min_counter: int
) -> ExactIndex:
    """Check the state (manifest authentic and fresh, blobs exactly its own), decrypt and check every blob (all
    or nothing), and build the index."""
    blobs = [(chunk.doc_id, chunk.version, chunk.index) for chunk in loaded.chunks]
    first = loaded.chunks[0] if loaded.chunks else None

    def chunk_opens() -> bool:
        return first is not None and cipher.opens("chunk", first.doc_id, first.version, first.index, first.sealed_text)

    manifest = manifest_key.current(loaded.manifest, min_counter, blobs, chunk_opens)
    check_blobs(manifest, blobs)
    refs: list[ChunkRef] = []
    vectors: list[np.ndarray] = []
    for chunk in loaded.chunks:
        sealed_text = cipher.open_chunk(chunk.doc_id, chunk.version, chunk.index, chunk.sealed_text)
        try:
            record = ChunkRecord.decode(sealed_text)
        except ValueError:  # authentic but not a record this code writes: refuse, do not guess
            raise InvalidCiphertext() from None
        vectors.append(cipher.open_embedding(chunk.doc_id, chunk.version, chunk.index, chunk.sealed_embedding))
        refs.append(
            ChunkRef(chunk.doc_id, chunk.version, chunk.index, record.text, record.title, record.heading, record.page)
        )
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    return ExactIndex(refs, matrix, manifest.counter)


def _listed_blobs(documents: Iterable[DocumentInfo]) -> list[Blob]:
    """The blobs a store's document rows claim (for a collection from before manifests)."""
    return [(d.doc_id, d.version, index) for d in documents for index in range(d.num_chunks)]
