"""The parsers, one per kind; they run in the budgeted child process (``sandbox.py``).

PDF (pypdf): text page by page; a short line that is not a sentence and is followed by text is taken for a
heading (PDFs keep no structure for us to read); an encrypted PDF that does not open with an empty password is
refused, and one whose pages hold no text (a scan) is ``no_text_layer``. Word (python-docx): paragraphs, with
``Heading``/``Title`` styles as headings, and table rows; the zip is checked first against a bomb (total and
per-member expansion). HTML (BeautifulSoup, the standard library's parser): the main text (``main`` or
``article`` when there is one) without scripts, navigation, headers, footers and forms; ``h1``-``h6`` are the
headings. Markdown: ``#`` lines are headings. Plain text: one section.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Final

from securechat.errors import ErrorCode
from securechat.rag.documents.model import DOCX, HTML, MARKDOWN, PDF, DocumentRefused, ParsedDocument, Section

MAX_ZIP_BYTES: Final = 64 << 20  # a Word file's members, expanded
MAX_ZIP_RATIO: Final = 200  # a member that expands more than this is a bomb
_HEADING_MAX_WORDS: Final = 10
_DROPPED_HTML: Final = (
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "svg",
    "iframe",
)
_HTML_BLOCKS: Final = ("p", "li", "pre", "blockquote", "td", "th", "dd", "dt", "figcaption")
_MARKDOWN_HEADING: Final = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


def parse(media_type: str, data: bytes, filename: str) -> ParsedDocument:
    if media_type == PDF:
        return parse_pdf(data, filename)
    if media_type == DOCX:
        return parse_docx(data, filename)
    if media_type == HTML:
        return parse_html(data, filename)
    text = data.decode("utf-8")
    return (
        parse_markdown(text, filename) if media_type == MARKDOWN else ParsedDocument(_stem(filename), (Section(text),))
    )


def parse_pdf(data: bytes, filename: str) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentRefused(ErrorCode.DOCUMENT_ENCRYPTED)
        pages: list[str] = []
        for pdf_page in reader.pages:
            contents = pdf_page.get_contents()
            if contents is not None:
                contents.get_data()  # inflated here, so a bomb raises (extract_text would swallow it as no text)
            pages.append(pdf_page.extract_text() or "")
        metadata_title = (reader.metadata.title if reader.metadata is not None else None) or ""
    except DocumentRefused:
        raise
    except FileNotDecryptedError:
        raise DocumentRefused(ErrorCode.DOCUMENT_ENCRYPTED) from None
    except LimitReachedError:  # pypdf's own bound on what a stream may inflate to
        raise DocumentRefused(ErrorCode.DOCUMENT_TOO_COMPLEX) from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError):
        raise DocumentRefused(ErrorCode.DOCUMENT_MALFORMED) from None
    if pages and not any(page.strip() for page in pages):
        raise DocumentRefused(ErrorCode.NO_TEXT_LAYER)
    sections: list[Section] = []
    heading: str | None = None
    title = metadata_title.strip()
    for number, page in enumerate(pages, 1):
        lines = [line.strip() for line in page.splitlines()]
        body: list[str] = []
        for index, line in enumerate(lines):
            if title and line == title and not sections and not body:
                continue  # the title printed at the top of the first page
            following = next((text for text in lines[index + 1 :] if text), "")
            if _looks_like_heading(line, following):
                if body:
                    sections.append(Section(" ".join(body), heading, number))
                    body = []
                heading = line
            elif line:
                body.append(line)
        if body:
            sections.append(Section(" ".join(body), heading, number))
    first_heading = next((s.heading for s in sections if s.heading), None)
    return ParsedDocument(title or first_heading or _stem(filename), tuple(sections))


def _looks_like_heading(line: str, following: str) -> bool:
    words = line.split()
    return (
        0 < len(words) <= _HEADING_MAX_WORDS
        and not line.endswith((".", ",", ";", ":", "!", "?"))
        and line[:1].isupper()
        and len(following.split()) > _HEADING_MAX_WORDS
    )


def parse_docx(data: bytes, filename: str) -> ParsedDocument:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    _check_zip(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile, OSError) as exc:
        raise DocumentRefused(ErrorCode.DOCUMENT_MALFORMED) from exc
    title = (document.core_properties.title or "").strip()
    sections: list[Section] = []
    heading: str | None = None
    body: list[str] = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        if not text:
            continue
        if style.startswith("Heading") or style == "Title":
            if body:
                sections.append(Section("\n".join(body), heading))
                body = []
            if style == "Title" and not title:
                title = text
            heading = text
        else:
            body.append(text)
    if body:
        sections.append(Section("\n".join(body), heading))
    for table in document.tables:
        rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
        if any(row.strip(" |") for row in rows):
            sections.append(Section("\n".join(rows), heading))
    first_heading = next((s.heading for s in sections if s.heading), None)
    return ParsedDocument(title or first_heading or _stem(filename), tuple(sections))


def _check_zip(data: bytes) -> None:
    """A Word file's zip, refused before it is opened if it would expand into a bomb."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile:
        raise DocumentRefused(ErrorCode.DOCUMENT_MALFORMED) from None
    total = sum(member.file_size for member in members)
    bomb = any(member.file_size > MAX_ZIP_RATIO * max(member.compress_size, 1) for member in members)
    if total > MAX_ZIP_BYTES or bomb:
        raise DocumentRefused(ErrorCode.DOCUMENT_TOO_COMPLEX)


def parse_html(data: bytes, filename: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag is not None else ""
    for tag in soup.find_all(_DROPPED_HTML):
        tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.find("body") or soup
    sections: list[Section] = []
    heading: str | None = None
    body: list[str] = []
    for element in root.find_all([*(f"h{level}" for level in range(1, 7)), *_HTML_BLOCKS]):
        if element.find_parent(_HTML_BLOCKS) is not None:
            continue  # inside another block: its text is already that block's
        text = " ".join(element.get_text(" ", strip=True).split())
        if not text:
            continue
        if element.name in {f"h{level}" for level in range(1, 7)}:
            if body:
                sections.append(Section("\n".join(body), heading))
                body = []
            heading = text
            title = title or text
        else:
            body.append(text)
    if body:
        sections.append(Section("\n".join(body), heading))
    return ParsedDocument(title or _stem(filename), tuple(sections))


def parse_markdown(text: str, filename: str) -> ParsedDocument:
    sections: list[Section] = []
    heading: str | None = None
    body: list[str] = []
    title = ""
    for line in text.splitlines():
        match = _MARKDOWN_HEADING.match(line)
        if match:
            if "".join(body).strip():
                sections.append(Section("\n".join(body).strip(), heading))
            body = []
            heading = match.group(2)
            title = title or heading
        else:
            body.append(line)
    if "".join(body).strip():
        sections.append(Section("\n".join(body).strip(), heading))
    return ParsedDocument(title or _stem(filename), tuple(sections))


def _stem(filename: str) -> str:
    return filename.rsplit(".", 1)[0] if "." in filename else filename
