"""A collection's search index in the worker: exact dense top-k, and BM25 beside it, fused (hybrid).

Dense: inner product over unit vectors (= cosine similarity), in numpy. At 10,000 chunks x 384 dimensions the
matrix is 15 MB and one query is a single matrix-vector product plus a partial sort: a few milliseconds, exact,
no approximate index to tune (benchmarks/bench_rag.py compares faiss's IndexFlatIP on the same data). Hybrid:
the dense similarity and BM25's score (``lexical.py``, over each chunk's title, heading and text), each scaled
to [0, 1] and blended; a hit's score is then its blended score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from securechat.rag.lexical import BM25Index, blend


@dataclass(frozen=True, slots=True)
class ChunkRef:
    doc_id: str
    version: int
    index: int
    text: str = field(repr=False)
    title: str = field(default="", repr=False)  # the document's title
    heading: str | None = field(default=None, repr=False)  # the section's heading
    page: int | None = None  # PDF: the page the chunk is on

    @property
    def searchable(self) -> str:
        return "\n".join(part for part in (self.title, self.heading or "", self.text) if part)


@dataclass(frozen=True, slots=True)
class Hit:
    ref: ChunkRef
    score: float


class ExactIndex:
    def __init__(self, refs: Sequence[ChunkRef], matrix: np.ndarray, counter: int = 0) -> None:
        # matrix: [n, d] float32, rows L2-normalised, row i belongs to refs[i]
        if matrix.ndim != 2 or matrix.shape[0] != len(refs):
            raise ValueError("one embedding row per chunk")
        self.refs = list(refs)
        self.matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        self.counter = counter  # the authenticated collection state it was built from (securechat.rag.manifest)
        self.lexical = BM25Index([ref.searchable for ref in self.refs])

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def nbytes(self) -> int:
        """What this index holds in memory (vectors and chunk texts), for the cache's budget."""
        texts = sum(2 * len(ref.searchable.encode()) + 96 for ref in self.refs)
        return int(self.matrix.nbytes) + texts + self.lexical.nbytes

    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best chunks for a unit ``query`` vector [d], best first."""
        if not self.refs or k < 1:
            return []
        scores = self.matrix @ query.astype(np.float32, copy=False)  # [n]
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(self.refs[i], float(scores[i])) for i in top]

    def search_hybrid(self, query: np.ndarray, text: str, k: int) -> list[Hit]:
        """The ``k`` best chunks by the dense similarity and BM25's score blended (``lexical.blend``)."""
        if not self.refs or k < 1:
            return []
        dense = self.matrix @ query.astype(np.float32, copy=False)
        scores = blend(dense, self.lexical.scores(text))
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(self.refs[i], float(scores[i])) for i in top]
