"""Exact top-k search, and the bounded, generation-checked cache of decrypted collections."""

from __future__ import annotations

import itertools

import numpy as np

from securechat.rag.cache import CollectionCache
from securechat.rag.index import ChunkRef, ExactIndex


def _index(n: int, seed: int = 0) -> ExactIndex:
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((n, 16)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return ExactIndex([ChunkRef(f"d{i}", 1, i, f"text {i}") for i in range(n)], matrix)


def test_search_is_exact_and_ordered() -> None:
    index = _index(500)
    query = index.matrix[123] + 0.01 * index.matrix[7]
    query /= np.linalg.norm(query)
    hits = index.search(query, 5)
    expected = np.argsort(-(index.matrix @ query))[:5]
    assert [h.ref.index for h in hits] == list(expected) and hits[0].ref.index == 123
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert len(index.search(query, 10_000)) == 500 and _index(0).search(query, 3) == []


def test_cache_evicts_least_recently_used_within_its_budget() -> None:
    a, b, c = _index(10, 1), _index(10, 2), _index(10, 3)
    cache = CollectionCache(max_bytes=a.nbytes * 2 + 1, idle_s=60)
    cache.put(("t", "a", "k"), 1, a)
    cache.put(("t", "b", "k"), 1, b)
    assert cache.get(("t", "a", "k"), 1) is a  # a is now the most recently used
    cache.put(("t", "c", "k"), 1, c)
    assert cache.get(("t", "b", "k"), 1) is None and cache.get(("t", "a", "k"), 1) is a
    assert cache.nbytes <= cache.max_bytes


def test_cache_misses_on_a_new_generation_another_key_or_idleness() -> None:
    now = [0.0]
    cache = CollectionCache(max_bytes=10**9, idle_s=5, clock=lambda: now[0])
    index = _index(4)
    cache.put(("t", "c", "key1"), 3, index)
    assert cache.get(("t", "c", "key2"), 3) is None  # another key never sees this one's plaintext
    assert cache.get(("t", "c", "key1"), 4) is None  # the collection changed: rebuild
    cache.put(("t", "c", "key1"), 4, index)
    now[0] = 10.0
    assert cache.get(("t", "c", "key1"), 4) is None and len(cache) == 0 and cache.nbytes == 0


def test_an_index_larger_than_the_budget_is_not_kept() -> None:
    cache = CollectionCache(max_bytes=10, idle_s=60)
    cache.put(("t", "c", "k"), 1, _index(50))
    assert len(cache) == 0
