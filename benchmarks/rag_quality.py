"""Retrieval quality on the corpus under tests/rag_corpus: recall@k and MRR, by document.

A question's rank is the position of the first retrieved chunk that belongs to the document named as its
answer (1 = best), or None if none is among the ``top_k``. The corpus's questions paraphrase their documents;
none copies a document's wording.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from securechat.rag.bodies import CollectionRef, DocumentInput, IngestBody
from securechat.rag.keys import CollectionKey
from securechat.rag.service import IngestTicket, RagService
from securechat.rag.store import StoreLimits

CORPUS: Final = Path(__file__).resolve().parents[1] / "tests" / "rag_corpus" / "corpus.json"
UNLIMITED: Final = StoreLimits(10**9, 10**9)


@dataclass(frozen=True, slots=True)
class Quality:
    num_questions: int
    recall_at_1: float
    recall_at_5: float
    mrr: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_questions": self.num_questions,
            "recall_at_1": round(self.recall_at_1, 3),
            "recall_at_5": round(self.recall_at_5, 3),
            "mrr": round(self.mrr, 3),
        }


def load_corpus(path: Path = CORPUS) -> dict[str, Any]:
    corpus: dict[str, Any] = json.loads(path.read_text())
    return corpus


def score(ranks: Sequence[int | None]) -> Quality:
    n = len(ranks)
    return Quality(
        num_questions=n,
        recall_at_1=sum(1 for r in ranks if r == 1) / n,
        recall_at_5=sum(1 for r in ranks if r is not None and r <= 5) / n,
        mrr=sum(1 / r for r in ranks if r is not None) / n,
    )


def _media_type(filename: str) -> str:
    return "text/markdown" if filename.endswith(".md") else "text/plain"


async def evaluate(service: RagService, tenant_id: str, collection_id: str, corpus: dict[str, Any]) -> Quality:
    """Ingest the corpus into an existing, empty collection, then ask every question (top 5)."""
    ref = CollectionRef(collection_id, CollectionKey.generate())
    documents = tuple(
        DocumentInput(
            d["id"], d["filename"], "text/markdown" if d["filename"].endswith(".md") else "text/plain", d["text"]
        )
        for d in corpus["documents"]
    )
    await service.ingest(tenant_id, IngestBody(ref, documents), UNLIMITED, IngestTicket.new())
    ranks: list[int | None] = []
    for item in corpus["questions"]:
        retrieval = await service.retrieve(tenant_id, ref, item["question"], 5)
        doc_ids = [hit.ref.doc_id for hit in retrieval.hits]
        ranks.append(doc_ids.index(item["doc"]) + 1 if item["doc"] in doc_ids else None)
    return score(ranks)
