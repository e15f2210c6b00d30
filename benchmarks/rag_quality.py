"""Retrieval quality on the eval corpora: recall@k and MRR, by document.

Two corpora: ``tests/rag_corpus`` (30 plain-text and markdown documents on unrelated topics, 40 questions) and
``tests/rag_corpus_hard`` (36 documents in 6 families of near-identical siblings, 72 questions, each document
rendered as the PDF, Word file, HTML page or text its ``format`` names, so every parser is on the path).
A question's rank is the position of the first retrieved chunk that belongs to the document named as its
answer (1 = best), or None if none is among the top 5. The questions paraphrase their documents; none copies
a document's wording.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from benchmarks.render_documents import Sect, to_docx, to_html, to_pdf, to_text
from securechat.rag.bodies import CollectionRef, DocumentInput, IngestBody
from securechat.rag.documents.model import DOCX, HTML, MARKDOWN, PDF, TEXT
from securechat.rag.keys import CollectionKey
from securechat.rag.service import IngestTicket, RagService
from securechat.rag.store import StoreLimits

CORPUS: Final = Path(__file__).resolve().parents[1] / "tests" / "rag_corpus" / "corpus.json"
HARD_CORPUS: Final = CORPUS.parents[1] / "rag_corpus_hard" / "corpus.json"
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


def as_input(document: dict[str, Any]) -> DocumentInput:
    """A corpus document as a client sends it: its text, or (hard corpus) rendered in its ``format``."""
    if "text" in document:
        media_type = MARKDOWN if document["filename"].endswith(".md") else TEXT
        return DocumentInput(document["id"], document["filename"], media_type, document["text"])
    title = document["title"]
    sections = [Sect(s["heading"], tuple(s["paragraphs"])) for s in document["sections"]]
    name = document["id"]
    match document["format"]:
        case "pdf":
            return DocumentInput(name, f"{name}.pdf", PDF, data=to_pdf(title, sections))
        case "docx":
            return DocumentInput(name, f"{name}.docx", DOCX, data=to_docx(title, sections))
        case "html":
            return DocumentInput(name, f"{name}.html", HTML, data=to_html(title, sections))
        case _:
            return DocumentInput(name, f"{name}.md", MARKDOWN, to_text(title, sections))


async def evaluate(service: RagService, tenant_id: str, collection_id: str, corpus: dict[str, Any]) -> Quality:
    """Ingest the corpus into an existing, empty collection, then ask every question (top 5)."""
    ref = CollectionRef(collection_id, CollectionKey.generate())
    documents = tuple(as_input(d) for d in corpus["documents"])
    await service.ingest(tenant_id, IngestBody(ref, documents), UNLIMITED, IngestTicket.new())
    ranks: list[int | None] = []
    for item in corpus["questions"]:
        retrieval = await service.retrieve(tenant_id, ref, item["question"], 5)
        doc_ids = [hit.ref.doc_id for hit in retrieval.hits]
        ranks.append(doc_ids.index(item["doc"]) + 1 if item["doc"] in doc_ids else None)
    return score(ranks)
