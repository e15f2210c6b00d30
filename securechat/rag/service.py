"""The worker's side of collections: ingest, retrieve, search and embed, with plaintext only in this process.

``RagService`` is plain Python; the worker replica builds it with an embedder and an ``AsyncDocumentStore`` (the
store deployment's handle in production, ``LocalDocumentStore`` in tests). Everything that leaves it for the store is
sealed under the collection key (``sealing.py``); what comes back is opened here, checked, and kept only in the
bounded in-memory cache. Model work (embedding) runs off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from securechat.errors import ErrorCode
from securechat.rag.bodies import MEDIA_TYPES, CollectionRef, DocumentInput, IngestBody
from securechat.rag.cache import CollectionCache
from securechat.rag.chunking import chunk_text
from securechat.rag.embedder import Embedder
from securechat.rag.index import ChunkRef, ExactIndex, Hit
from securechat.rag.sealing import CollectionCipher
from securechat.rag.store import LoadedCollection, SealedChunk, SealedDocument, StoreLimits
from securechat.rag.store_client import AsyncDocumentStore


class DocumentRejected(Exception):
    """A document the worker will not index; the code is content-free (the host may see it)."""

    def __init__(self, code: ErrorCode, limit: int | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.limit = limit


@dataclass(frozen=True, slots=True)
class RagOptions:
    max_document_bytes: int
    chunk_tokens: int
    overlap_tokens: int
    cache_bytes: int
    cache_idle_s: float


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


class RagService:
    def __init__(self, embedder: Embedder, store: AsyncDocumentStore, options: RagOptions) -> None:
        self.embedder = embedder
        self.store = store
        self.options = options
        self.cache = CollectionCache(options.cache_bytes, options.cache_idle_s)

    # -- ingest ----------------------------------------------------------------------------------------------
    async def ingest(self, tenant_id: str, body: IngestBody, limits: StoreLimits) -> dict[str, Any]:
        """Chunk, embed, seal and store ``body.documents``; raises DocumentRejected, StoreError, or
        InvalidCiphertext (never: the key is only used to seal here)."""
        for document in body.documents:
            self._check(document)
        ref = body.collection
        version = await self.store.begin_ingest(tenant_id, ref.collection_id)
        cipher = CollectionCipher(ref.key, tenant_id, ref.collection_id)
        sealed = await asyncio.to_thread(self._prepare, body.documents, cipher, version)
        result = await self.store.commit(tenant_id, ref.collection_id, version, sealed, limits)
        counts = {d.doc_id: len(d.chunks) for d in sealed}
        return {
            "version": version,
            "documents": [{"doc_id": doc_id, "num_chunks": counts[doc_id]} for doc_id in result.written],
            "superseded": list(result.superseded),
        }

    def _check(self, document: DocumentInput) -> None:
        if document.media_type not in MEDIA_TYPES:
            raise DocumentRejected(ErrorCode.UNSUPPORTED_DOCUMENT_TYPE)
        size = len(document.text.encode())
        if size > self.options.max_document_bytes:
            raise DocumentRejected(ErrorCode.DOCUMENT_TOO_LARGE, self.options.max_document_bytes)
        if not document.text.strip():
            raise DocumentRejected(ErrorCode.DOCUMENT_EMPTY)

    def _prepare(
        self, documents: Sequence[DocumentInput], cipher: CollectionCipher, version: int
    ) -> list[SealedDocument]:
        """Off the event loop: chunk every document, embed every chunk in one pass, seal it all."""
        per_document = [
            chunk_text(d.text, self.embedder.tokenizer, self.options.chunk_tokens, self.options.overlap_tokens)
            for d in documents
        ]
        if any(not chunks for chunks in per_document):
            raise DocumentRejected(ErrorCode.DOCUMENT_EMPTY)
        vectors = self.embedder.embed([c.text for chunks in per_document for c in chunks])
        sealed, row = [], 0
        for document, chunks in zip(documents, per_document, strict=True):
            sealed_chunks = []
            for chunk in chunks:
                sealed_chunks.append(
                    SealedChunk(
                        chunk.index,
                        cipher.seal_chunk(document.doc_id, version, chunk.index, chunk.text),
                        cipher.seal_embedding(document.doc_id, version, chunk.index, vectors[row]),
                    )
                )
                row += 1
            meta = {
                "filename": document.filename,
                "media_type": document.media_type,
                "num_bytes": len(document.text.encode()),
                "num_chunks": len(chunks),
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
        retrieval.hits = index.search(vector, top_k)
        retrieval.timings.search_ms = (time.perf_counter() - started) * 1000
        retrieval.timings.num_chunks = len(index)
        return retrieval

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(self.embedder.embed, list(texts))

    async def _index(self, tenant_id: str, ref: CollectionRef, timings: RetrievalTimings) -> ExactIndex:
        key = (tenant_id, ref.collection_id, ref.key.fingerprint())
        generation = await self.store.generation(tenant_id, ref.collection_id)
        cached = self.cache.get(key, generation)
        if cached is not None:
            timings.cached = True
            return cached
        started = time.perf_counter()
        loaded = await self.store.load(tenant_id, ref.collection_id)
        index = await asyncio.to_thread(
            _open_collection, loaded, CollectionCipher(ref.key, tenant_id, ref.collection_id)
        )
        timings.load_ms = (time.perf_counter() - started) * 1000
        self.cache.put(key, loaded.generation, index)
        return index


def _open_collection(loaded: LoadedCollection, cipher: CollectionCipher) -> ExactIndex:
    """Decrypt and check every blob (all or nothing) and build the index."""
    refs: list[ChunkRef] = []
    vectors: list[np.ndarray] = []
    for chunk in loaded.chunks:
        text = cipher.open_chunk(chunk.doc_id, chunk.version, chunk.index, chunk.sealed_text)
        vectors.append(cipher.open_embedding(chunk.doc_id, chunk.version, chunk.index, chunk.sealed_embedding))
        refs.append(ChunkRef(chunk.doc_id, chunk.version, chunk.index, text))
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 1), dtype=np.float32)
    return ExactIndex(refs, matrix)
