"""The host's store of sealed collections in SQL, on an SQLite file (one node) or PostgreSQL (a cluster).

The contract and its records are in ``store_api`` (re-exported here). One implementation serves both
backends, so both behave the same and the same tests run on each. Every write is one transaction: a commit
either stores every document of an ingest and its new manifest, within the tenant's limits, or nothing.
Writers of one collection are ordered by a lock on its row (SQLite locks the whole file instead) and by the
manifest's counter, and a commit locks every collection of its tenant first, so two ingests into different
collections cannot both pass the tenant's document limit. With PostgreSQL, several store replicas on several
nodes may serve one database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from securechat.db import Database, DatabaseSettings, Transaction, open_database
from securechat.db.sqlite import SQLiteDatabase
from securechat.errors import ErrorCode
from securechat.rag.store_api import (
    CollectionInfo,
    DocumentInfo,
    DocumentListing,
    DocumentStore,
    LoadedCollection,
    ManifestUpdate,
    SealedChunk,
    SealedDocument,
    StoredChunk,
    StoreError,
    StoreLimits,
)

__all__ = [
    "DEFAULT_STORE_PATH",
    "CollectionInfo",
    "DocumentInfo",
    "DocumentListing",
    "DocumentStore",
    "LoadedCollection",
    "ManifestUpdate",
    "SQLDocumentStore",
    "SQLiteDocumentStore",
    "SealedChunk",
    "SealedDocument",
    "StoreError",
    "StoreLimits",
    "StoredChunk",
    "open_document_store",
]

DEFAULT_STORE_PATH: Final = Path("~/.local/share/securechat/documents.sqlite3")
COMPONENT: Final = "documents"

# IF NOT EXISTS: SQLite files written before schemas were versioned already hold these tables.
_V1: Final = (
    """
    CREATE TABLE IF NOT EXISTS collections (
        collection_id TEXT PRIMARY KEY,
        tenant_id TEXT NOT NULL,
        created_at {real} NOT NULL,
        generation {int} NOT NULL DEFAULT 0,
        next_version {int} NOT NULL DEFAULT 1
    )
    """,
    "CREATE INDEX IF NOT EXISTS collections_by_tenant ON collections (tenant_id)",
    """
    CREATE TABLE IF NOT EXISTS documents (
        collection_id TEXT NOT NULL REFERENCES collections (collection_id) ON DELETE CASCADE,
        doc_id TEXT NOT NULL,
        version {int} NOT NULL,
        created_at {real} NOT NULL,
        num_chunks {int} NOT NULL,
        num_bytes {int} NOT NULL,
        sealed_meta {blob} NOT NULL,
        PRIMARY KEY (collection_id, doc_id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS chunks (
        collection_id TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        version {int} NOT NULL,
        chunk_index {int} NOT NULL,
        sealed_text {blob} NOT NULL,
        sealed_embedding {blob} NOT NULL,
        PRIMARY KEY (collection_id, doc_id, chunk_index),
        FOREIGN KEY (collection_id, doc_id) REFERENCES documents (collection_id, doc_id) ON DELETE CASCADE
    )
    """,
)
# The authenticated manifest (securechat.rag.manifest) and its counter, which writers compare-and-swap.
_V2: Final = (
    "ALTER TABLE collections ADD COLUMN manifest {blob}",
    "ALTER TABLE collections ADD COLUMN manifest_counter {int} NOT NULL DEFAULT 0",
)
STEPS: Final = (_V1, _V2)


class SQLDocumentStore(DocumentStore):
    """The store on ``database``; it closes the database on ``close`` (it owns it)."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self._now = clock
        self._lock = database.dialect.for_update
        database.migrate(COMPONENT, STEPS)

    def close(self) -> None:
        self.database.close()

    def create_collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        with self.database.transaction() as tx:
            created = tx.execute(
                "INSERT INTO collections (collection_id, tenant_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (collection_id) DO NOTHING RETURNING collection_id",
                (collection_id, tenant_id, self._now()),
            )
            if not created.rows:
                raise StoreError(ErrorCode.COLLECTION_EXISTS)
            return self._info(tx, collection_id)

    def collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        with self.database.transaction(write=False) as tx:
            return self._owned(tx, tenant_id, collection_id, lock=False)

    def list_collections(self, tenant_id: str) -> list[CollectionInfo]:
        with self.database.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT collection_id FROM collections WHERE tenant_id = ? ORDER BY created_at, collection_id",
                (tenant_id,),
            ).rows
            return [self._info(tx, row[0]) for row in rows]

    def delete_collection(self, tenant_id: str, collection_id: str) -> None:
        with self.database.transaction() as tx:
            self._owned(tx, tenant_id, collection_id)
            tx.execute("DELETE FROM chunks WHERE collection_id = ?", (collection_id,))
            tx.execute("DELETE FROM documents WHERE collection_id = ?", (collection_id,))
            tx.execute("DELETE FROM collections WHERE collection_id = ?", (collection_id,))

    def list_documents(self, tenant_id: str, collection_id: str) -> DocumentListing:
        with self.database.transaction(write=False) as tx:
            self._owned(tx, tenant_id, collection_id, lock=False)
            rows = tx.execute(
                "SELECT doc_id, version, created_at, num_chunks, num_bytes, sealed_meta FROM documents"
                " WHERE collection_id = ? ORDER BY created_at, doc_id",
                (collection_id,),
            ).rows
            manifest = self._manifest(tx, collection_id)
        documents = tuple(DocumentInfo(r[0], int(r[1]), float(r[2]), int(r[3]), int(r[4]), bytes(r[5])) for r in rows)
        return DocumentListing(documents, manifest)

    def delete_document(self, tenant_id: str, collection_id: str, doc_id: str, update: ManifestUpdate) -> None:
        with self.database.transaction() as tx:
            self._owned(tx, tenant_id, collection_id)
            self._replace_manifest(tx, collection_id, update)
            deleted = tx.execute(
                "DELETE FROM documents WHERE collection_id = ? AND doc_id = ?", (collection_id, doc_id)
            ).rowcount
            if not deleted:
                raise StoreError(ErrorCode.UNKNOWN_DOCUMENT)  # rolls the manifest back too
            tx.execute("DELETE FROM chunks WHERE collection_id = ? AND doc_id = ?", (collection_id, doc_id))
            tx.execute("UPDATE collections SET generation = generation + 1 WHERE collection_id = ?", (collection_id,))

    def begin_ingest(self, tenant_id: str, collection_id: str) -> int:
        with self.database.transaction() as tx:
            self._owned(tx, tenant_id, collection_id)
            (version,) = tx.execute(
                "UPDATE collections SET next_version = next_version + 1 WHERE collection_id = ?"
                " RETURNING next_version - 1",
                (collection_id,),
            ).one()
            return int(version)

    def commit(
        self,
        tenant_id: str,
        collection_id: str,
        version: int,
        documents: Sequence[SealedDocument],
        limits: StoreLimits,
        update: ManifestUpdate,
    ) -> None:
        with self.database.transaction() as tx:
            # Every collection of the tenant, in one order: the limit check below sees no concurrent commit.
            tx.execute(
                f"SELECT collection_id FROM collections WHERE tenant_id = ? ORDER BY collection_id{self._lock}",
                (tenant_id,),
            )
            self._owned(tx, tenant_id, collection_id)
            self._replace_manifest(tx, collection_id, update)
            for document in documents:
                self._write_document(tx, collection_id, version, document)
            num_documents, num_chunks = tx.execute(
                "SELECT COUNT(*), COALESCE(SUM(d.num_chunks), 0) FROM documents d"
                " JOIN collections c ON c.collection_id = d.collection_id WHERE c.tenant_id = ?",
                (tenant_id,),
            ).one()
            if int(num_documents) > limits.max_documents:
                raise StoreError(ErrorCode.TOO_MANY_DOCUMENTS)  # rolls the whole commit back
            if int(num_chunks) > limits.max_chunks:
                raise StoreError(ErrorCode.TOO_MANY_CHUNKS)
            tx.execute("UPDATE collections SET generation = generation + 1 WHERE collection_id = ?", (collection_id,))

    @staticmethod
    def _replace_manifest(tx: Transaction, collection_id: str, update: ManifestUpdate) -> None:
        """Compare and swap: the new manifest follows the stored one, or another writer came first."""
        replaced = tx.execute(
            "UPDATE collections SET manifest = ?, manifest_counter = ?"
            " WHERE collection_id = ? AND manifest_counter = ?",
            (update.manifest, update.counter, collection_id, update.counter - 1),
        ).rowcount
        if not replaced:
            raise StoreError(ErrorCode.COLLECTION_CHANGED)

    @staticmethod
    def _manifest(tx: Transaction, collection_id: str) -> bytes | None:
        (manifest,) = tx.execute("SELECT manifest FROM collections WHERE collection_id = ?", (collection_id,)).one()
        return None if manifest is None else bytes(manifest)

    def _write_document(self, tx: Transaction, collection_id: str, version: int, document: SealedDocument) -> None:
        tx.execute("DELETE FROM chunks WHERE collection_id = ? AND doc_id = ?", (collection_id, document.doc_id))
        tx.execute(
            "INSERT INTO documents (collection_id, doc_id, version, created_at, num_chunks, num_bytes, sealed_meta)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (collection_id, doc_id) DO UPDATE SET"
            " version = excluded.version, created_at = excluded.created_at, num_chunks = excluded.num_chunks,"
            " num_bytes = excluded.num_bytes, sealed_meta = excluded.sealed_meta",
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
        tx.executemany(
            "INSERT INTO chunks (collection_id, doc_id, version, chunk_index, sealed_text, sealed_embedding)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [
                (collection_id, document.doc_id, version, chunk.index, chunk.sealed_text, chunk.sealed_embedding)
                for chunk in document.chunks
            ],
        )

    def load(self, tenant_id: str, collection_id: str) -> LoadedCollection:
        with self.database.transaction(write=False) as tx:
            info = self._owned(tx, tenant_id, collection_id, lock=False)
            rows = tx.execute(
                "SELECT doc_id, version, chunk_index, sealed_text, sealed_embedding FROM chunks"
                " WHERE collection_id = ? ORDER BY doc_id, chunk_index",
                (collection_id,),
            ).rows
            manifest = self._manifest(tx, collection_id)
        chunks = tuple(StoredChunk(r[0], int(r[1]), int(r[2]), bytes(r[3]), bytes(r[4])) for r in rows)
        return LoadedCollection(info.generation, chunks, manifest)

    def generation(self, tenant_id: str, collection_id: str) -> int:
        return self.collection(tenant_id, collection_id).generation

    def _owned(self, tx: Transaction, tenant_id: str, collection_id: str, *, lock: bool = True) -> CollectionInfo:
        row = tx.execute(
            f"SELECT tenant_id FROM collections WHERE collection_id = ?{self._lock if lock else ''}",
            (collection_id,),
        ).first()
        if row is None:
            raise StoreError(ErrorCode.UNKNOWN_COLLECTION)
        if row[0] != tenant_id:
            raise StoreError(ErrorCode.FORBIDDEN)
        return self._info(tx, collection_id)

    @staticmethod
    def _info(tx: Transaction, collection_id: str) -> CollectionInfo:
        tenant_id, created_at, generation = tx.execute(
            "SELECT tenant_id, created_at, generation FROM collections WHERE collection_id = ?", (collection_id,)
        ).one()
        num_documents, num_chunks, num_bytes = tx.execute(
            "SELECT COUNT(*), COALESCE(SUM(num_chunks), 0), COALESCE(SUM(num_bytes), 0) FROM documents"
            " WHERE collection_id = ?",
            (collection_id,),
        ).one()
        return CollectionInfo(
            collection_id,
            tenant_id,
            float(created_at),
            int(generation),
            int(num_documents),
            int(num_chunks),
            int(num_bytes),
        )


class SQLiteDocumentStore(SQLDocumentStore):
    """The embedded default: one SQLite file (WAL, 0600) owned by one process (the store deployment)."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        database = SQLiteDatabase(path)
        self.path = database.path
        super().__init__(database, clock)


def open_document_store(database: DatabaseSettings, store_path: Path | str) -> SQLDocumentStore:
    """PostgreSQL when ``database.url`` is set (any number of store replicas), else the SQLite file."""
    return SQLDocumentStore(open_database(database, store_path))
