"""An in-process service with collections: gateway, a worker with the real embedder, an SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from securechat.client import SecureChatClient
from securechat.client.keyring import Keyring
from securechat.config import RagSettings
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.modes import CollectionModes
from securechat.rag.service import RagOptions, RagService
from securechat.rag.store import SQLiteDocumentStore
from securechat.rag.store_client import LocalDocumentStore
from securechat.tenants.policy import TenantPolicy
from tests.client_harness import LocalService, TrustFiles, make_worker, serve_gateway
from tests.fakes import ScriptedEngine

RAG = RagSettings(enabled=True, max_document_bytes=64_000)  # room for a small Word file (its template is ~35 KB)
POLICY = TenantPolicy(max_documents=6, max_chunks=400)
ANSWER = ("From your documents: ", "see [1].")
BREAD = (
    "# Baking bread\n\nKnead the dough for ten minutes, then let it rise for an hour in a warm place. "
    "Bake at 220 degrees until the crust is brown and the loaf sounds hollow when tapped."
)
TRAINS = "The night train to Vienna leaves platform 4 at 22:15 and arrives at 07:30 the next morning."
TAXES = "Quarterly tax returns are due thirty days after the end of each quarter; late filing adds a penalty."


@contextmanager
def serve_rag(
    trust: TrustFiles,
    embedder: MiniLMEmbedder,
    store: SQLiteDocumentStore,
    engine: ScriptedEngine,
    *,
    num_workers: int = 1,
    policy: TenantPolicy = POLICY,
) -> Iterator[LocalService]:
    """The gateway over ``num_workers`` workers with collections, each with its own cache, one store."""
    documents = LocalDocumentStore(store)
    options = RagOptions(RAG.max_document_bytes, RAG.chunk_tokens, RAG.overlap_tokens, RAG.cache_bytes, 60)
    workers = [
        make_worker(
            f"w{i}", trust.root, collections=CollectionModes(RagService(embedder, documents, options)), engine=engine
        )
        for i in range(num_workers)
    ]
    with serve_gateway(workers, documents=documents, rag=RAG, default_policy=policy) as running:
        yield running


def client_for(service: LocalService, trust: TrustFiles, tmp_path: Path, tenant: str = "tenant1") -> SecureChatClient:
    return SecureChatClient(
        trust.client_config(service.url, tenant_id=tenant), keyring=Keyring(tmp_path / f"{tenant}-keyring.json")
    )
