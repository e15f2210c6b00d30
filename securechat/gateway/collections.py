"""The host's side of collections: create, list and delete them, list and delete documents, check ownership.

Everything here is metadata the host holds anyway (opaque ids, counts, sizes, sealed blobs it cannot open).
Adding documents and everything that reads them runs in a worker (the ``ingest``, ``search`` and ``rag``
modes); this module never sees a key or a plaintext.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from securechat.db import DatabaseUnavailable
from securechat.errors import ErrorCode
from securechat.gateway.http_errors import HTTPError
from securechat.rag.manifest import claimed_counter
from securechat.rag.store import CollectionInfo, DocumentInfo, ManifestUpdate, StoreError
from securechat.rag.store_client import AsyncDocumentStore

T = TypeVar("T")


def new_collection_id() -> str:
    return f"col_{uuid.uuid4().hex}"


class CollectionAdmin:
    def __init__(self, store: AsyncDocumentStore) -> None:
        self.store = store

    async def check(self, tenant_id: str, collection_id: str) -> None:
        """404 for an unknown collection, 403 for another tenant's."""
        await _mapped(self.store.collection(tenant_id, collection_id))

    async def create(self, tenant_id: str) -> dict[str, Any]:
        return _collection(await _mapped(self.store.create_collection(tenant_id, new_collection_id())))

    async def list_for(self, tenant_id: str) -> list[dict[str, Any]]:
        return [_collection(info) for info in await _mapped(self.store.list_collections(tenant_id))]

    async def delete(self, tenant_id: str, collection_id: str) -> None:
        await _mapped(self.store.delete_collection(tenant_id, collection_id))

    async def documents(self, tenant_id: str, collection_id: str) -> dict[str, Any]:
        """The documents and the collection's manifest (authenticated by the client, which alone can)."""
        listing = await _mapped(self.store.list_documents(tenant_id, collection_id))
        manifest = None if listing.manifest is None else base64.b64encode(listing.manifest).decode()
        return {"documents": [_document(info) for info in listing.documents], "manifest": manifest}

    async def delete_document(self, tenant_id: str, collection_id: str, doc_id: str, manifest_b64: str) -> None:
        """The document goes, and ``manifest`` (the client's, without it) replaces the collection's."""
        try:
            manifest = base64.b64decode(manifest_b64, validate=True)
            update = ManifestUpdate(manifest, claimed_counter(manifest))
        except (binascii.Error, ValueError, TypeError):
            raise HTTPError(ErrorCode.INVALID_REQUEST, fields=[{"loc": ["body", "manifest"]}]) from None
        await _mapped(self.store.delete_document(tenant_id, collection_id, doc_id, update))


async def _mapped(call: Awaitable[T]) -> T:
    try:
        return await call
    except StoreError as refused:
        raise HTTPError(refused.code) from None
    except DatabaseUnavailable:  # the store's database is down (raised in the store replica, re-raised here)
        raise HTTPError(ErrorCode.DATABASE_UNAVAILABLE) from None


def _collection(info: CollectionInfo) -> dict[str, Any]:
    return {
        "collection_id": info.collection_id,
        "created_at": info.created_at,
        "num_documents": info.num_documents,
        "num_chunks": info.num_chunks,
        "num_bytes": info.num_bytes,
    }


def _document(info: DocumentInfo) -> dict[str, Any]:
    return {
        "doc_id": info.doc_id,
        "version": info.version,
        "created_at": info.created_at,
        "num_chunks": info.num_chunks,
        "num_bytes": info.num_bytes,
        "sealed_meta": base64.b64encode(info.sealed_meta).decode(),  # opened by the client, under its key
    }
