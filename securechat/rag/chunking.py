"""Cutting a document into chunks that fit the embedder's window, with overlap, on sentence ends when possible.

Sizes are in the embedder's own tokens (all-MiniLM-L6-v2 reads at most 256 word pieces, [CLS] and [SEP]
included): a chunk holds at most ``chunk_tokens`` (default 200) and the next chunk starts ``overlap_tokens``
(default 40) before the previous one ended, so a sentence cut at a boundary still appears whole in one chunk.
Within the second half of a window the cut moves back to the last sentence end (. ! ? ; or a line break) if
there is one, and never falls inside a word. A chunk's text is the exact span of the document it covers
(markdown included), so a citation points at real text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

DEFAULT_CHUNK_TOKENS: Final = 200
DEFAULT_OVERLAP_TOKENS: Final = 40
_SENTENCE_ENDS: Final = frozenset(".!?;")


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    text: str = field(repr=False)
    start: int  # character offsets into the document
    end: int


def chunk_text(
    text: str,
    tokenizer: Any,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[Chunk]:
    """The chunks of ``text`` (none if it has no tokens). ``tokenizer`` is a fast tokenizer with offsets."""
    if not 0 <= overlap_tokens < chunk_tokens // 2:
        raise ValueError("overlap_tokens must be below half of chunk_tokens")
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets: list[tuple[int, int]] = [tuple(pair) for pair in encoding["offset_mapping"]]
    tokens: list[str] = encoding.tokens()
    n = len(offsets)
    chunks: list[Chunk] = []
    start = 0
    while start < n:
        end = min(start + chunk_tokens, n)
        if end < n:
            end = _cut(text, tokens, offsets, start, end)
        begin, finish = offsets[start][0], offsets[end - 1][1]
        chunks.append(Chunk(len(chunks), text[begin:finish], begin, finish))
        if end >= n:
            break
        start = _word_start(tokens, max(end - overlap_tokens, start + 1))
    return chunks


def _cut(text: str, tokens: list[str], offsets: list[tuple[int, int]], start: int, end: int) -> int:
    """Where a full window should end: after the last sentence end in its second half, else at a word start."""
    for j in range(end - 1, start + (end - start) // 2, -1):
        ends_sentence = text[offsets[j][1] - 1 : offsets[j][1]] in _SENTENCE_ENDS
        breaks_line = "\n" in text[offsets[j][1] : offsets[j + 1][0]]
        if ends_sentence or breaks_line:
            return j + 1
    word_start = end
    while word_start > start + 1 and tokens[word_start].startswith("##"):
        word_start -= 1
    return word_start


def _word_start(tokens: list[str], index: int) -> int:
    while index < len(tokens) and tokens[index].startswith("##"):
        index += 1
    return index
