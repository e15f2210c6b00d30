"""What a parsed document is, which kinds there are, and how a refusal is named.

A document arrives sealed with a declared media type; the worker checks the bytes are of that kind (a PDF
starts with ``%PDF-``, a Word file is a zip holding ``word/document.xml``, HTML has markup) and parses it into
``Section``s: runs of text with the heading they sit under and, for a PDF, the page they are on. Every failure
is a ``DocumentRefused`` with a content-free code: the host learns only the code (as for ``document_empty``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from securechat.errors import ErrorCode

PDF: Final = "application/pdf"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HTML: Final = "text/html"
MARKDOWN: Final = "text/markdown"
TEXT: Final = "text/plain"
TEXT_TYPES: Final = frozenset({TEXT, MARKDOWN})  # sent as text
BINARY_TYPES: Final = frozenset({PDF, DOCX, HTML})  # sent as bytes, decoded in the worker
MEDIA_TYPES: Final = TEXT_TYPES | BINARY_TYPES
SUFFIXES: Final = {
    ".txt": TEXT,
    ".text": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".pdf": PDF,
    ".docx": DOCX,
    ".html": HTML,
    ".htm": HTML,
}


class DocumentRefused(Exception):
    """A document the worker will not index; ``code`` is content-free (the host may see it)."""

    def __init__(self, code: ErrorCode, limit: int | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Section:
    text: str = field(repr=False)
    heading: str | None = field(default=None, repr=False)  # the nearest heading above it
    page: int | None = None  # 1-based, PDF only


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    title: str = field(repr=False)
    sections: tuple[Section, ...] = field(repr=False)

    @property
    def text_chars(self) -> int:
        return sum(len(section.text.strip()) for section in self.sections)
