"""Exact top-k search by inner product over unit vectors (= cosine similarity), in numpy.

At 10,000 chunks x 384 dimensions the matrix is 15 MB and one query is a single matrix-vector product plus a
partial sort: a few milliseconds, exact, no approximate index to tune (benchmarks/bench_rag.py compares faiss's
IndexFlatIP on the same data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class ChunkRef:
    doc_id: str
    version: int
    index: int
    text: str = field(repr=False)


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

    def __len__(self) -> int:
        return len(self.refs)

    @property
    def nbytes(self) -> int:
        """What this index holds in memory (vectors and chunk texts), for the cache's budget."""
        return int(self.matrix.nbytes) + sum(len(ref.text.encode()) + 64 for ref in self.refs)

    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best chunks for a unit ``query`` vector [d], best first."""
        if not self.refs or k < 1:
            return []
        scores = self.matrix @ query.astype(np.float32, copy=False)  # [n]
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(self.refs[i], float(scores[i])) for i in top]
