"""The host's store of sealed collections: ciphertext, opaque ids, sizes and counts. Never plaintext or keys.

One row per collection (owner tenant, generation), per document (latest version only, its sealed metadata) and
per chunk (its sealed text and sealed embedding). Ingests are versioned: ``begin_ingest`` hands out the next
version of the collection (atomically; concurrent ingests get distinct versions), the worker seals every blob of
that ingest under it (the version is in each blob's AAD), and ``commit`` replaces a document only by a higher
version, in one transaction, so concurrent ingests lose nothing and a document never mixes chunks of two
versions. Every change moves the collection's generation on; workers rebuild their cached index when it moved.

``DocumentStore`` is the contract (an SQLite file is the embedded default, ``SQLiteDocumentStore``; a cluster
database can take its place behind the same methods). Its methods are synchronous; the Serve deployment that
owns the store calls them off its event loop.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from securechat.errors import ErrorCode

DEFAULT_STORE_PATH: Final = Path("~/.local/share/securechat/documents.sqlite3")


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


@dataclass(frozen=True, slots=True)
class CommitResult:
    written: tuple[str, ...]  # doc ids stored by this commit
    superseded: tuple[str, ...]  # doc ids a higher version had already replaced


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
    def list_documents(self, tenant_id: str, collection_id: str) -> list[DocumentInfo]: ...

    @abstractmethod
    def delete_document(self, tenant_id: str, collection_id: str, doc_id: str) -> None:
        """Every version and chunk of the document goes; UNKNOWN_DOCUMENT if there is none."""

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
    ) -> CommitResult:
        """Store ``documents`` under ``version`` atomically, within the tenant's limits (else nothing is
        written: TOO_MANY_DOCUMENTS / TOO_MANY_CHUNKS)."""

    @abstractmethod
    def load(self, tenant_id: str, collection_id: str) -> LoadedCollection:
        """Every chunk of the latest version of every document, and the generation they belong to."""

    @abstractmethod
    def generation(self, tenant_id: str, collection_id: str) -> int: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS collections (
    collection_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    next_version INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS collections_by_tenant ON collections (tenant_id);
CREATE TABLE IF NOT EXISTS documents (
    collection_id TEXT NOT NULL REFERENCES collections (collection_id) ON DELETE CASCADE,
    doc_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    num_chunks INTEGER NOT NULL,
    num_bytes INTEGER NOT NULL,
    sealed_meta BLOB NOT NULL,
    PRIMARY KEY (collection_id, doc_id)
);
CREATE TABLE IF NOT EXISTS chunks (
    collection_id TEXT NOT NULL,
    doc_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    chunk_index INTEGER NOT NULL,
    sealed_text BLOB NOT NULL,
    sealed_embedding BLOB NOT NULL,
    PRIMARY KEY (collection_id, doc_id, chunk_index),
    FOREIGN KEY (collection_id, doc_id) REFERENCES documents (collection_id, doc_id) ON DELETE CASCADE
);
"""


class SQLiteDocumentStore(DocumentStore):
    """The embedded default: one SQLite file (WAL, 0600) owned by one process (the store deployment)."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(os.path.expandvars(str(path))).expanduser()  # "~" and "$VARS" in a configured path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._now = clock

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def create_collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM collections WHERE collection_id = ?", (collection_id,)).fetchone():
                raise StoreError(ErrorCode.COLLECTION_EXISTS)
            db.execute(
                "INSERT INTO collections (collection_id, tenant_id, created_at) VALUES (?, ?, ?)",
                (collection_id, tenant_id, self._now()),
            )
            return self._info(db, collection_id)

    def collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        with self._lock:
            return self._owned(self._conn, tenant_id, collection_id)

    def list_collections(self, tenant_id: str) -> list[CollectionInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT collection_id FROM collections WHERE tenant_id = ? ORDER BY created_at, collection_id",
                (tenant_id,),
            ).fetchall()
            return [self._info(self._conn, row[0]) for row in rows]

    def delete_collection(self, tenant_id: str, collection_id: str) -> None:
        with self._transaction() as db:
            self._owned(db, tenant_id, collection_id)
            db.execute("DELETE FROM chunks WHERE collection_id = ?", (collection_id,))
            db.execute("DELETE FROM documents WHERE collection_id = ?", (collection_id,))
            db.execute("DELETE FROM collections WHERE collection_id = ?", (collection_id,))

    def list_documents(self, tenant_id: str, collection_id: str) -> list[DocumentInfo]:
        with self._lock:
            self._owned(self._conn, tenant_id, collection_id)
            rows = self._conn.execute(
                "SELECT doc_id, version, created_at, num_chunks, num_bytes, sealed_meta FROM documents"
                " WHERE collection_id = ? ORDER BY created_at, doc_id",
                (collection_id,),
            ).fetchall()
        return [DocumentInfo(r[0], r[1], r[2], r[3], r[4], bytes(r[5])) for r in rows]

    def delete_document(self, tenant_id: str, collection_id: str, doc_id: str) -> None:
        with self._transaction() as db:
            self._owned(db, tenant_id, collection_id)
            deleted = db.execute(
                "DELETE FROM documents WHERE collection_id = ? AND doc_id = ?", (collection_id, doc_id)
            ).rowcount
            if not deleted:
                raise StoreError(ErrorCode.UNKNOWN_DOCUMENT)
            db.execute("DELETE FROM chunks WHERE collection_id = ? AND doc_id = ?", (collection_id, doc_id))
            db.execute("UPDATE collections SET generation = generation + 1 WHERE collection_id = ?", (collection_id,))

    def begin_ingest(self, tenant_id: str, collection_id: str) -> int:
        with self._transaction() as db:
            self._owned(db, tenant_id, collection_id)
            (version,) = db.execute(
                "UPDATE collections SET next_version = next_version + 1 WHERE collection_id = ?"
                " RETURNING next_version - 1",
                (collection_id,),
            ).fetchone()
            return int(version)

    def commit(
        self,
        tenant_id: str,
        collection_id: str,
        version: int,
        documents: Sequence[SealedDocument],
        limits: StoreLimits,
    ) -> CommitResult:
        written: list[str] = []
        superseded: list[str] = []
        with self._transaction() as db:
            self._owned(db, tenant_id, collection_id)
            for document in documents:
                row = db.execute(
                    "SELECT version FROM documents WHERE collection_id = ? AND doc_id = ?",
                    (collection_id, document.doc_id),
                ).fetchone()
                if row is not None and row[0] > version:
                    superseded.append(document.doc_id)
                    continue
                db.execute(
                    "DELETE FROM chunks WHERE collection_id = ? AND doc_id = ?", (collection_id, document.doc_id)
                )
                db.execute(
                    "INSERT OR REPLACE INTO documents"
                    " (collection_id, doc_id, version, created_at, num_chunks, num_bytes, sealed_meta)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        collection_id,
                        document.doc_id,
                        version,
                        self._now(),
                        len(document.chunks),
                        document.num_bytes,
                        document.sealed_meta,
                    ),
                )
                db.executemany(
                    "INSERT INTO chunks (collection_id, doc_id, version, chunk_index, sealed_text, sealed_embedding)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (collection_id, document.doc_id, version, c.index, c.sealed_text, c.sealed_embedding)
                        for c in document.chunks
                    ],
                )
                written.append(document.doc_id)
            num_documents, num_chunks = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(d.num_chunks), 0) FROM documents d"
                " JOIN collections c ON c.collection_id = d.collection_id WHERE c.tenant_id = ?",
                (tenant_id,),
            ).fetchone()
            if num_documents > limits.max_documents:
                raise StoreError(ErrorCode.TOO_MANY_DOCUMENTS)  # rolls the whole commit back
            if num_chunks > limits.max_chunks:
                raise StoreError(ErrorCode.TOO_MANY_CHUNKS)
            db.execute("UPDATE collections SET generation = generation + 1 WHERE collection_id = ?", (collection_id,))
        return CommitResult(tuple(written), tuple(superseded))

    def load(self, tenant_id: str, collection_id: str) -> LoadedCollection:
        with self._lock:
            info = self._owned(self._conn, tenant_id, collection_id)
            rows = self._conn.execute(
                "SELECT doc_id, version, chunk_index, sealed_text, sealed_embedding FROM chunks"
                " WHERE collection_id = ? ORDER BY doc_id, chunk_index",
                (collection_id,),
            ).fetchall()
        chunks = tuple(StoredChunk(r[0], r[1], r[2], bytes(r[3]), bytes(r[4])) for r in rows)
        return LoadedCollection(info.generation, chunks)

    def generation(self, tenant_id: str, collection_id: str) -> int:
        return self.collection(tenant_id, collection_id).generation

    @staticmethod
    def _owned(db: sqlite3.Connection, tenant_id: str, collection_id: str) -> CollectionInfo:
        row = db.execute("SELECT tenant_id FROM collections WHERE collection_id = ?", (collection_id,)).fetchone()
        if row is None:
            raise StoreError(ErrorCode.UNKNOWN_COLLECTION)
        if row[0] != tenant_id:
            raise StoreError(ErrorCode.FORBIDDEN)
        return SQLiteDocumentStore._info(db, collection_id)

    @staticmethod
    def _info(db: sqlite3.Connection, collection_id: str) -> CollectionInfo:
        tenant_id, created_at, generation = db.execute(
            "SELECT tenant_id, created_at, generation FROM collections WHERE collection_id = ?", (collection_id,)
        ).fetchone()
        num_documents, num_chunks, num_bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(num_chunks), 0), COALESCE(SUM(num_bytes), 0) FROM documents"
            " WHERE collection_id = ?",
            (collection_id,),
        ).fetchone()
        return CollectionInfo(collection_id, tenant_id, created_at, generation, num_documents, num_chunks, num_bytes)
