"""The document store as the gateway and the workers call it: asynchronous, wherever the store lives.

In the Serve app the store is a deployment and this is its handle (deployments/store.py); in-process (tests,
tools) ``LocalDocumentStore`` runs a ``DocumentStore``'s methods off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from securechat.rag.store import (
    CollectionInfo,
    DocumentListing,
    DocumentStore,
    LoadedCollection,
    ManifestUpdate,
    SealedDocument,
    StoreLimits,
)


class AsyncDocumentStore(Protocol):
    async def create_collection(self, tenant_id: str, collection_id: str) -> CollectionInfo: ...

    async def collection(self, tenant_id: str, collection_id: str) -> CollectionInfo: ...

    async def list_collections(self, tenant_id: str) -> list[CollectionInfo]: ...

    async def delete_collection(self, tenant_id: str, collection_id: str) -> None: ...

    async def list_documents(self, tenant_id: str, collection_id: str) -> DocumentListing: ...

    async def delete_document(
        self, tenant_id: str, collection_id: str, doc_id: str, update: ManifestUpdate
    ) -> None: ...

    async def begin_ingest(self, tenant_id: str, collection_id: str) -> int: ...

    async def commit(
        self,
        tenant_id: str,
        collection_id: str,
        version: int,
        documents: Sequence[SealedDocument],
        limits: StoreLimits,
        update: ManifestUpdate,
    ) -> None: ...

    async def load(self, tenant_id: str, collection_id: str) -> LoadedCollection: ...

    async def generation(self, tenant_id: str, collection_id: str) -> int: ...


class LocalDocumentStore:
    """An ``AsyncDocumentStore`` over a store in this process."""

    def __init__(self, store: DocumentStore) -> None:
        self.store = store

    async def create_collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        return await asyncio.to_thread(self.store.create_collection, tenant_id, collection_id)

    async def collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        return await asyncio.to_thread(self.store.collection, tenant_id, collection_id)

    async def list_collections(self, tenant_id: str) -> list[CollectionInfo]:
        return await asyncio.to_thread(self.store.list_collections, tenant_id)

    async def delete_collection(self, tenant_id: str, collection_id: str) -> None:
        await asyncio.to_thread(self.store.delete_collection, tenant_id, collection_id)

    async def list_documents(self, tenant_id: str, collection_id: str) -> DocumentListing:
        return await asyncio.to_thread(self.store.list_documents, tenant_id, collection_id)

    async def delete_document(self, tenant_id: str, collection_id: str, doc_id: str, update: ManifestUpdate) -> None:
        await asyncio.to_thread(self.store.delete_document, tenant_id, collection_id, doc_id, update)

    async def begin_ingest(self, tenant_id: str, collection_id: str) -> int:
        return await asyncio.to_thread(self.store.begin_ingest, tenant_id, collection_id)

    async def commit(
        self,
        tenant_id: str,
        collection_id: str,
        version: int,
        documents: Sequence[SealedDocument],
        limits: StoreLimits,
        update: ManifestUpdate,
    ) -> None:
        await asyncio.to_thread(self.store.commit, tenant_id, collection_id, version, documents, limits, update)

    async def load(self, tenant_id: str, collection_id: str) -> LoadedCollection:
        return await asyncio.to_thread(self.store.load, tenant_id, collection_id)

    async def generation(self, tenant_id: str, collection_id: str) -> int:
        return await asyncio.to_thread(self.store.generation, tenant_id, collection_id)
