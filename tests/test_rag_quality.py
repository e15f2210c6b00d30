"""Retrieval finds the right document for paraphrased questions (the corpus under tests/rag_corpus)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.rag_quality import evaluate, load_corpus, score
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.service import RagOptions, RagService
from securechat.rag.store import SQLiteDocumentStore
from securechat.rag.store_client import LocalDocumentStore


def test_recall_at_5_meets_its_target(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    store = SQLiteDocumentStore(tmp_path / "docs.sqlite3")
    store.create_collection("t1", "corpus")
    service = RagService(embedder, LocalDocumentStore(store), RagOptions(1 << 20, 200, 40, 1 << 28, 60))
    quality = asyncio.run(evaluate(service, "t1", "corpus", load_corpus()))
    assert quality.num_questions == 40
    assert quality.recall_at_5 >= 0.9 and quality.mrr >= 0.75


def test_metrics_are_computed_by_document_rank() -> None:
    quality = score([1, 2, None, 5, 6])
    assert (quality.recall_at_1, quality.recall_at_5) == (0.2, 0.6)
    assert abs(quality.mrr - (1 + 1 / 2 + 1 / 5 + 1 / 6) / 5) < 1e-9
