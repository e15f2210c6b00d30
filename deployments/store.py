"""The document store deployment: owns the sealed-collection store.

Its backend comes from config: the SQLite file ``rag.store_path`` by default (then one replica, on one node,
owns it), or PostgreSQL when ``database.url`` is set (then any number of replicas, on any nodes).

Workers and the gateway reach it through ``HandleDocumentStore``, an ``AsyncDocumentStore`` over its handle.
It holds ciphertext, opaque ids and sizes only; ``StoreError`` refusals cross back to callers with their codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ray.serve.handle import DeploymentHandle

from securechat.config import AppSettings
from securechat.rag.store import (
    CollectionInfo,
    DocumentListing,
    LoadedCollection,
    ManifestUpdate,
    SealedDocument,
    StoreLimits,
    open_document_store,
)

STORE_DEPLOYMENT = "DocumentStore"


class DocumentStoreDeployment:
    def __init__(self, settings: dict[str, Any]) -> None:
        app = AppSettings.model_validate(settings)
        self._store = open_document_store(app.database, app.rag.store_path)

    async def call(self, method: str, *args: Any) -> Any:
        """Every store method by name, run off the event loop (the store's methods are synchronous)."""
        if method.startswith("_") or not hasattr(self._store, method):
            raise AttributeError(method)
        return await asyncio.to_thread(getattr(self._store, method), *args)

    def __del__(self) -> None:
        store = getattr(self, "_store", None)
        if store is not None:
            store.close()


class HandleDocumentStore:
    """``AsyncDocumentStore`` over the store deployment's handle."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._call = handle.options(method_name="call")

    async def _invoke(self, method: str, *args: Any) -> Any:
        return await self._call.remote(method, *args)

    async def create_collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        info: CollectionInfo = await self._invoke("create_collection", tenant_id, collection_id)
        return info

    async def collection(self, tenant_id: str, collection_id: str) -> CollectionInfo:
        info: CollectionInfo = await self._invoke("collection", tenant_id, collection_id)
        return info

    async def list_collections(self, tenant_id: str) -> list[CollectionInfo]:
        infos: list[CollectionInfo] = await self._invoke("list_collections", tenant_id)
        return infos

    async def delete_collection(self, tenant_id: str, collection_id: str) -> None:
        await self._invoke("delete_collection", tenant_id, collection_id)

    async def list_documents(self, tenant_id: str, collection_id: str) -> DocumentListing:
        listing: DocumentListing = await self._invoke("list_documents", tenant_id, collection_id)
        return listing

    async def delete_document(self, tenant_id: str, collection_id: str, doc_id: str, update: ManifestUpdate) -> None:
        await self._invoke("delete_document", tenant_id, collection_id, doc_id, update)

    async def begin_ingest(self, tenant_id: str, collection_id: str) -> int:
        version: int = await self._invoke("begin_ingest", tenant_id, collection_id)
        return version

    async def commit(
        self,
        tenant_id: str,
        collection_id: str,
        version: int,
        documents: Sequence[SealedDocument],
        limits: StoreLimits,
        update: ManifestUpdate,
    ) -> None:
        await self._invoke("commit", tenant_id, collection_id, version, list(documents), limits, update)

    async def load(self, tenant_id: str, collection_id: str) -> LoadedCollection:
        loaded: LoadedCollection = await self._invoke("load", tenant_id, collection_id)
        return loaded

    async def generation(self, tenant_id: str, collection_id: str) -> int:
        generation: int = await self._invoke("generation", tenant_id, collection_id)
        return generation
