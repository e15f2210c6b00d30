"""BM25 over a collection's chunks, built in the worker from the decrypted chunks (never stored, rebuilt when
the collection is loaded), and its blend with the dense similarity.

Tokens: runs of ASCII letters and digits, lowercased, English stop words dropped, a light suffix strip
(plurals, -ing, -ed, -ly), so "refunds" meets "refund" and "charging" meets "charged". Scores are Okapi
BM25 (k1 1.5, b 0.75) over each chunk's title, heading and text. The hybrid score is a weighted sum of the
two, each scaled to [0, 1] (``blend``): the dense similarity carries the paraphrase, BM25 the exact words (a
fee, a setting's name, a number) that tell near-identical sibling documents apart. The weight 0.8 was
measured on the two eval corpora (benchmarks/bench_rag.py); reciprocal rank fusion, tried first, let BM25's
matches on common words ("long", "take") outrank the dense answer on paraphrased questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

K1: Final = 1.5
B: Final = 0.75
DENSE_WEIGHT: Final = 0.8
# bytes.translate table: ASCII letters (lowercased) and digits kept, every other byte a space.
_WORD_BYTES: Final = bytes(
    c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256)
)
_STOP_LINES: Final = (
    "a an and are as at be been but by can could did do does for from had has have how i if in into is it its",
    "me my no not of on or our so that the their them then there these they this to was we were what when where",
    "which who why will with would you your yours about after again all also am any because before being both",
    "each few further here just more most must off once only other out over own same should some such than too",
    "under until up very while whom",
)
STOP_WORDS: Final = frozenset(word for line in _STOP_LINES for word in line.split())
_SUFFIXES: Final = ("ings", "ing", "edly", "ed", "ies", "es", "ly", "s")


def words(text: str) -> list[bytes]:
    """The runs of ASCII letters and digits in ``text``, lowercased (any other character separates words)."""
    return text.encode().translate(_WORD_BYTES).split()


def tokens(text: str) -> list[str]:
    """The terms BM25 sees: words without stop words, stemmed."""
    return [_stem(word.decode()) for word in words(text) if word.decode() not in STOP_WORDS]


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


class _Vocabulary(dict[bytes, int]):
    """Word -> term id, filled as words are met: a stop word is -1, inflections of one stem share an id. A
    subclass of dict so that looking up a known word (nearly every word) runs in C."""

    def __init__(self) -> None:
        super().__init__()
        self.terms: dict[str, int] = {}

    def __missing__(self, word: bytes) -> int:
        text = word.decode()
        term = -1 if text in STOP_WORDS else self.terms.setdefault(_stem(text), len(self.terms))
        self[word] = term
        return term


class BM25Index:
    """Postings in flat numpy arrays, grouped by term: term t's chunks are ``rows[starts[t]:starts[t + 1]]``
    and their BM25 weights (idf x saturated term frequency, length-normalised) are precomputed beside them, so
    a query adds one slice per query term. Building it is one pass of C-level word lookups and a sort."""

    def __init__(self, documents: Sequence[str]) -> None:
        self._vocabulary = _Vocabulary()
        lookup = self._vocabulary.__getitem__
        ids = [np.fromiter(map(lookup, words(text)), dtype=np.int64) for text in documents]
        num_rows, num_terms = len(documents), max(len(self._vocabulary.terms), 1)
        term_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        row_ids = np.repeat(np.arange(num_rows, dtype=np.int64), [len(row) for row in ids])
        kept = term_ids >= 0
        pairs, frequencies = np.unique(term_ids[kept] * num_rows + row_ids[kept], return_counts=True)
        terms, rows = np.divmod(pairs, num_rows)  # sorted by term, then row
        lengths = np.bincount(rows, weights=frequencies, minlength=num_rows)
        average = float(lengths.mean()) if num_rows else 0.0
        document_frequency = np.bincount(terms, minlength=num_terms)
        idf = np.log1p((num_rows - document_frequency + 0.5) / (document_frequency + 0.5))
        norm = frequencies + K1 * (1 - B + B * lengths[rows] / (average or 1.0))
        self._rows = rows.astype(np.int32)
        self._weights = (idf[terms] * frequencies * (K1 + 1) / norm).astype(np.float32)
        self._starts = np.concatenate(([0], np.cumsum(document_frequency)))
        self._num_rows = num_rows

    def __len__(self) -> int:
        return self._num_rows

    @property
    def nbytes(self) -> int:
        return int(self._rows.nbytes + self._weights.nbytes + self._starts.nbytes) + 100 * len(self._vocabulary)

    def scores(self, query: str) -> np.ndarray:
        """Every chunk's BM25 score for ``query`` [n] (0 for a chunk sharing no term with it)."""
        scores = np.zeros(self._num_rows, dtype=np.float32)
        terms = {self._vocabulary.terms.get(term) for term in tokens(query)}
        for term in terms - {None}:
            assert term is not None
            start, end = self._starts[term], self._starts[term + 1]
            scores[self._rows[start:end]] += self._weights[start:end]
        return scores


def blend(dense: np.ndarray, lexical: np.ndarray, dense_weight: float = DENSE_WEIGHT) -> np.ndarray:
    """Each chunk's hybrid score: ``dense_weight`` x its cosine similarity min-max scaled over the collection,
    plus the rest x its BM25 score over the query's best BM25 score (0 for a chunk sharing no term)."""
    spread = float(dense.max() - dense.min()) if dense.size else 0.0
    blended = (dense - dense.min()) * (dense_weight / spread) if spread > 0 else np.zeros_like(dense)
    best = float(lexical.max()) if lexical.size else 0.0
    if best > 0:
        blended += lexical * ((1 - dense_weight) / best)
    return blended
