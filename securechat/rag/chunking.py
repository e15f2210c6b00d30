"""Cutting a document into chunks that fit the embedder's window, with overlap, on sentence ends when possible.

Sizes are in the embedder's own tokens (all-MiniLM-L6-v2 reads at most 256 word pieces, [CLS] and [SEP]
included): a chunk holds at most ``chunk_tokens`` (default 200) and the next chunk starts ``overlap_tokens``
(default 40) before the previous one ended, so a sentence cut at a boundary still appears whole in one chunk.
Within the second half of a window the cut moves back to the last sentence end (. ! ? ; or a line break) if
there is one, and never falls inside a word. A chunk's text is the exact span of the document it covers
(markdown included), so a citation points at real text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from securechat.rag.documents.model import Section

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


@dataclass(frozen=True, slots=True)
class LocatedChunk:
    """A chunk of a parsed document, with where it is: the section's heading and, for a PDF, its page."""

    index: int
    text: str = field(repr=False)
    heading: str | None = field(default=None, repr=False)
    page: int | None = None


def chunk_sections(
    sections: Sequence[Section],
    tokenizer: Any,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS,
) -> list[LocatedChunk]:
    """Every section chunked on its own (a chunk never spans two headings or two pages), numbered in order."""
    located: list[LocatedChunk] = []
    for section in sections:
        for chunk in chunk_text(section.text, tokenizer, chunk_tokens, overlap_tokens):
            located.append(LocatedChunk(len(located), chunk.text, section.heading, section.page))
    return located


# A chunk as it is sealed: its text, and where it is in its document. A record starts with the ASCII record
# separator, which no text chunk of an older collection starts with (those were sealed as bare text).
_RECORD: Final = "\x1e"


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    text: str = field(repr=False)
    title: str = field(default="", repr=False)
    heading: str | None = field(default=None, repr=False)
    page: int | None = None

    def encode(self) -> str:
        fields = {"t": self.text, "d": self.title, "h": self.heading, "p": self.page}
        return _RECORD + json.dumps(fields, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def decode(cls, sealed_text: str) -> ChunkRecord:
        """A record from its sealed form (ValueError if it is broken); bare text from an older collection."""
        if not sealed_text.startswith(_RECORD):
            return cls(sealed_text)
        fields = json.loads(sealed_text[1:])
        text, title, heading, page = fields.get("t"), fields.get("d", ""), fields.get("h"), fields.get("p")
        if not isinstance(text, str) or not isinstance(title, str):
            raise ValueError("not a chunk record")
        if heading is not None and not isinstance(heading, str):
            raise ValueError("not a chunk record")
        if page is not None and (not isinstance(page, int) or isinstance(page, bool) or page < 1):
            raise ValueError("not a chunk record")
        return cls(text, title, heading, page)

    @property
    def for_embedding(self) -> str:
        """What is embedded (and indexed for words): the chunk prefixed with its title and heading, so a
        question about "the espresso machine's warranty" finds the warranty chapter's plainest sentence."""
        return "\n".join(part for part in (self.title, self.heading or "", self.text) if part)
