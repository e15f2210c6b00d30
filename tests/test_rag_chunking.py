"""Chunks fit the embedder's window, overlap, end on sentences when they can, and are exact spans of the text."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from securechat.rag.chunking import chunk_text
from securechat.rag.embedder import minilm_model_dir


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_model_dir())


def _tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_a_short_text_is_one_chunk(tokenizer: Any) -> None:
    chunks = chunk_text("# Title\n\nOne short paragraph.", tokenizer)
    assert [(c.index, c.text) for c in chunks] == [(0, "# Title\n\nOne short paragraph.")]


def test_empty_text_has_no_chunk(tokenizer: Any) -> None:
    assert chunk_text("   \n\t ", tokenizer) == []


def test_long_text_is_cut_into_overlapping_windows_on_sentence_ends(tokenizer: Any) -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(120)]
    text = " ".join(sentences)
    chunks = chunk_text(text, tokenizer, chunk_tokens=60, overlap_tokens=12)
    assert len(chunks) > 10
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]  # exact spans: citations point at real text
        assert _tokens(tokenizer, chunk.text) <= 60
    assert all(c.text.endswith(".") for c in chunks[:-1])  # every full window ended on a sentence end
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end  # consecutive chunks overlap
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())  # nothing is lost


def test_a_text_without_sentence_ends_is_cut_between_words(tokenizer: Any) -> None:
    text = " ".join(["extraordinarily"] * 400)
    chunks = chunk_text(text, tokenizer, chunk_tokens=50, overlap_tokens=10)
    assert len(chunks) > 5
    assert all(c.text.startswith("extra") and c.text.endswith("ily") for c in chunks)  # never inside a word


def test_overlap_must_stay_below_half_the_window(tokenizer: Any) -> None:
    with pytest.raises(ValueError):
        chunk_text("text", tokenizer, chunk_tokens=50, overlap_tokens=25)
