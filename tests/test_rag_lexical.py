"""BM25 over chunk texts and its blend with the dense similarity (securechat.rag.lexical)."""

from __future__ import annotations

import numpy as np
import pytest

from securechat.rag.lexical import BM25Index, blend, tokens


def test_tokens_drop_stop_words_and_meet_across_inflections() -> None:
    assert tokens("The refunds are charging") == tokens("refund charged")
    assert tokens("What is it?") == []


def test_bm25_ranks_the_chunk_with_the_rare_exact_term_first() -> None:
    index = BM25Index(
        [
            "The standard account has a monthly fee of four euros.",
            "The premium account has a monthly fee of nine euros and a card.",
            "Opening hours of the branch office.",
        ]
    )
    scores = index.scores("which account costs nine euros a month")
    assert int(np.argmax(scores)) == 1 and scores[0] > 0
    assert scores[2] == 0  # shares no term with the query


def test_bm25_matches_what_a_slow_textbook_formula_gives() -> None:
    import math
    from collections import Counter

    texts = ["Refunds take ten days.", "A refund of fees", "Fees, fees and more fees!", ""]
    counted = [Counter(tokens(text)) for text in texts]
    average = sum(sum(c.values()) for c in counted) / len(texts)
    query = ["refund", "fee"]
    expected = []
    for counts in counted:
        score = 0.0
        for term in query:
            df = sum(1 for c in counted if term in c)
            idf = math.log(1 + (len(texts) - df + 0.5) / (df + 0.5))
            tf, length = counts[term], sum(counts.values())
            score += idf * tf * (1.5 + 1) / (tf + 1.5 * (1 - 0.75 + 0.75 * length / average))
        expected.append(score)
    assert BM25Index(texts).scores("refunds and FEES").tolist() == pytest.approx(expected, rel=1e-5)


def test_blend_scales_both_scores_to_the_unit_interval() -> None:
    dense = np.array([0.2, 0.6, 0.4], dtype=np.float32)
    blended = blend(dense, np.array([1.5, 0.0, 3.0], dtype=np.float32), dense_weight=0.8)
    assert blended == pytest.approx([0.0 + 0.1, 0.8, 0.4 + 0.2])


def test_blend_without_lexical_matches_keeps_the_dense_order() -> None:
    dense = np.array([0.3, 0.9, 0.5], dtype=np.float32)
    assert np.argsort(-blend(dense, np.zeros(3, dtype=np.float32))).tolist() == [1, 2, 0]
    assert blend(np.array([0.5], dtype=np.float32), np.array([2.0], dtype=np.float32)).tolist() == pytest.approx([0.2])
