"""The embedder is all-MiniLM-L6-v2 exactly as sentence-transformers runs it, loaded offline from its package."""

from __future__ import annotations

import numpy as np

from securechat.rag.embedder import MiniLMEmbedder, minilm_model_dir

TEXTS = [
    "The quarterly report shows revenue grew by twelve percent.",
    "Wie spät ist es?",
    "A very long passage " * 200,  # longer than the 256-token window: truncated, as sentence-transformers does
    "x",
]


def test_vectors_match_sentence_transformers(embedder: MiniLMEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_model_dir()), device="cpu").encode(TEXTS, convert_to_numpy=True)
    ours = embedder.embed(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: MiniLMEmbedder) -> None:
    cat, kitten, tax = embedder.embed(["A cat sleeps on the sofa.", "A kitten naps on the couch.", "File taxes."])
    assert float(cat @ kitten) > float(cat @ tax) + 0.3


def test_no_texts_gives_an_empty_matrix(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)
