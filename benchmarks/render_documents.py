"""Rendering a document (a title and sections of paragraphs) as a PDF, a Word file, HTML or text: the eval
corpus's documents in the formats they are meant to arrive in, and the tests' fixtures.

PDFs come from fpdf2 (headings bold and larger, one or more sections per page, ``pages`` chooses how many
sections share a page); Word files from python-docx (``Title`` and ``Heading 1`` styles); HTML is a whole page
with navigation, a header, a footer and a script around the ``main`` content, the noise a crawled page has.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sect:
    heading: str
    paragraphs: tuple[str, ...]


def to_pdf(title: str, sections: Sequence[Sect], *, sections_per_page: int = 1) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_auto_page_break(True, margin=15)
    for index, section in enumerate(sections):
        if index % sections_per_page == 0:
            pdf.add_page()
            if index == 0:
                pdf.set_font("Helvetica", "B", 18)
                pdf.multi_cell(0, 10, _latin(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "B", 14)
        pdf.multi_cell(0, 8, _latin(section.heading), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for paragraph in section.paragraphs:
            pdf.multi_cell(0, 6, _latin(paragraph), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    return bytes(pdf.output())


def to_docx(title: str, sections: Sequence[Sect]) -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=0)
    for section in sections:
        document.add_heading(section.heading, level=1)
        for paragraph in section.paragraphs:
            document.add_paragraph(paragraph)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def to_html(title: str, sections: Sequence[Sect]) -> bytes:
    body = "".join(
        f"<h2>{html.escape(s.heading)}</h2>" + "".join(f"<p>{html.escape(p)}</p>" for p in s.paragraphs)
        for s in sections
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<script>window.analytics = {track: function () {}};</script><style>nav{float:left}</style></head><body>"
        "<header><a href='/'>Home</a> | <a href='/about'>About us</a></header>"
        "<nav><ul><li><a href='/a'>Products</a></li><li><a href='/b'>Support</a></li><li>Careers</li></ul></nav>"
        f"<main><h1>{html.escape(title)}</h1>{body}</main>"
        "<footer>Copyright and cookie settings. Subscribe to our newsletter.</footer></body></html>"
    )
    return page.encode()


def to_text(title: str, sections: Sequence[Sect]) -> str:
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.heading}")
        parts.extend(section.paragraphs)
    return "\n\n".join(parts)


def _latin(text: str) -> str:
    """fpdf2's core fonts are Latin-1: typographic characters mapped, the rest replaced."""
    mapped = text.translate(
        {0x2019: "'", 0x2018: "'", 0x201C: '"', 0x201D: '"', 0x2013: "-", 0x2014: "-", 0x2026: "..."}
    )
    return mapped.encode("latin-1", errors="replace").decode("latin-1")
