"""Retrieval finds the right document for paraphrased questions: the easy corpus (tests/rag_corpus, plain text
on unrelated topics) and the hard one (tests/rag_corpus_hard: families of near-identical documents, rendered
as PDF, Word, HTML and text and parsed on the way in). Targets on the hard set: recall@1 >= 0.90, @5 >= 0.98."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from benchmarks.rag_quality import CORPUS, HARD_CORPUS, Quality, evaluate, load_corpus, score
from securechat.rag.embedder import MiniLMEmbedder
from securechat.rag.service import RagOptions, RagService
from securechat.rag.store import SQLiteDocumentStore
from securechat.rag.store_client import LocalDocumentStore


def quality(embedder: MiniLMEmbedder, tmp_path: Path, corpus: Path, retrieval: str) -> Quality:
    store = SQLiteDocumentStore(tmp_path / f"{retrieval}.sqlite3")
    store.create_collection("t1", "corpus")
    options = RagOptions(1 << 20, 200, 40, 1 << 28, 60, retrieval=retrieval)
    return asyncio.run(
        evaluate(RagService(embedder, LocalDocumentStore(store), options), "t1", "corpus", load_corpus(corpus))
    )


def test_paraphrased_questions_find_their_document(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    easy = quality(embedder, tmp_path, CORPUS, "hybrid")
    assert easy.num_questions == 40
    assert easy.recall_at_5 >= 0.95 and easy.mrr >= 0.9


def test_the_hard_corpus_meets_its_targets_through_every_parser(embedder: MiniLMEmbedder, tmp_path: Path) -> None:
    hybrid = quality(embedder, tmp_path, HARD_CORPUS, "hybrid")
    assert hybrid.num_questions == 72
    assert hybrid.recall_at_1 >= 0.90 and hybrid.recall_at_5 >= 0.98
    dense = quality(embedder, tmp_path, HARD_CORPUS, "dense")  # BM25 is what tells the siblings apart
    assert hybrid.recall_at_1 > dense.recall_at_1 and hybrid.mrr > dense.mrr


def test_the_hard_corpus_passes_its_own_checks() -> None:
    checker = HARD_CORPUS.parent / "check_corpus.py"
    result = subprocess.run([sys.executable, str(checker)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_metrics_are_computed_by_document_rank() -> None:
    quality = score([1, 2, None, 5, 6])
    assert (quality.recall_at_1, quality.recall_at_5) == (0.2, 0.6)
    assert abs(quality.mrr - (1 + 1 / 2 + 1 / 5 + 1 / 6) / 5) < 1e-9
