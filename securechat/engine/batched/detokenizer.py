"""Incremental detokenisation of one stream (vLLM's prefix/read offsets), run off the engine thread.

Text is emitted only when the decoded window does not end in U+FFFD, i.e. never in the middle of a UTF-8
sequence split across byte-level tokens. The two offsets keep the decoded window a few tokens wide, so the
cost per call does not grow with the length of the completion, and the pieces concatenate to exactly
``tokenizer.decode(all_ids, skip_special_tokens=True)``: each piece starts and ends on a character boundary.
"""

from __future__ import annotations

from typing import Any

_INCOMPLETE = "\ufffd"


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix_offset = 0  # start of the context window, a character boundary
        self._read_offset = 0  # ids before this are already emitted as text

    def _decode(self, ids: list[int]) -> str:
        text = self._tokenizer.decode(ids, skip_special_tokens=True)
        assert isinstance(text, str)
        return text

    def push(self, token_ids: list[int]) -> str:
        """Add new ids; return the text that is now complete (may be empty)."""
        self._ids.extend(token_ids)
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith(_INCOMPLETE):
            return ""  # nothing visible yet, or a character is still incomplete
        self._prefix_offset = self._read_offset
        self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]

    def flush(self) -> str:
        """At the end of the stream: whatever is left, incomplete characters included (as decode would)."""
        prefix_text = self._decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]
