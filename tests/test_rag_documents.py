"""PDF, Word and HTML parsed inside the worker's budgeted child process: sections keep their pages and
headings, the main text of a page survives its menus, and every hostile file (encrypted, malformed,
truncated, a lying type, a scan without text, a zip bomb, a PDF that inflates past its budget, a parser that
stalls, hoards memory or dies) is refused by name."""

from __future__ import annotations

import io
import zipfile
import zlib

import pytest
from pypdf import PdfWriter

from benchmarks.render_documents import Sect, to_docx, to_html, to_pdf
from securechat.errors import ErrorCode
from securechat.rag.documents.model import DOCX, HTML, PDF, DocumentRefused, ParsedDocument
from securechat.rag.documents.sandbox import ParseBudget, parse_in_child
from securechat.rag.documents.sniff import check_kind

SECTIONS = (
    Sect("Filling the tank", ("Fill the water tank with fresh cold water up to the line marked MAX. " * 3,)),
    Sect("Grinding the beans", ("Set the grinder to level four for a double shot of espresso. " * 3,)),
    Sect(
        "Descaling every month", ("Run the descaling program with one sachet of citric acid every thirty days. " * 3,)
    ),
)
BUDGET = ParseBudget(time_s=10, memory_bytes=512 << 20)


def parsed(media_type: str, data: bytes, budget: ParseBudget = BUDGET) -> ParsedDocument:
    check_kind(media_type, data)
    return parse_in_child(media_type, data, "manual", budget)


def refusal(media_type: str, data: bytes, budget: ParseBudget = BUDGET) -> ErrorCode:
    with pytest.raises(DocumentRefused) as refused:
        parsed(media_type, data, budget)
    return refused.value.code


def test_a_pdf_keeps_its_pages_and_headings() -> None:
    document = parsed(PDF, to_pdf("Aurora espresso manual", SECTIONS))
    assert document.title == "Aurora espresso manual"
    located = [(s.page, s.heading) for s in document.sections]
    assert located == [(1, "Filling the tank"), (2, "Grinding the beans"), (3, "Descaling every month")]
    assert "citric acid" in document.sections[2].text


def test_a_word_file_keeps_its_headings_and_tables() -> None:
    import docx

    word = docx.Document(io.BytesIO(to_docx("Aurora espresso manual", SECTIONS)))
    table = word.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text, table.cell(1, 0).text, table.cell(1, 1).text = (
        "Part",
        "Price",
        "Gasket",
        "12 EUR",
    )
    out = io.BytesIO()
    word.save(out)
    document = parsed(DOCX, out.getvalue())
    assert document.title == "Aurora espresso manual"
    assert [s.heading for s in document.sections[:3]] == [s.heading for s in SECTIONS]
    assert any("Gasket | 12 EUR" in s.text for s in document.sections)


def test_html_keeps_the_main_text_and_drops_the_menus() -> None:
    document = parsed(HTML, to_html("Aurora espresso manual", SECTIONS))
    text = " ".join(s.text for s in document.sections)
    assert document.title == "Aurora espresso manual" and "level four" in text
    for noise in ("Products", "Careers", "cookie", "analytics", "About us"):
        assert noise not in text
    assert [s.heading for s in document.sections] == [s.heading for s in SECTIONS]


def _encrypted_pdf() -> bytes:
    writer = PdfWriter(clone_from=io.BytesIO(to_pdf("Secret", SECTIONS)))
    writer.encrypt(user_password="hunter2", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _scanned_pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 100, 60, style="F")  # a page of drawing, no text: what a scan without OCR looks like
    return bytes(pdf.output())


def _bomb_pdf() -> bytes:
    """A small PDF whose one content stream inflates to 256 MiB of text-showing operators."""
    inflated = zlib.compress(b"BT (ab) Tj ET\n" * ((256 << 20) // 14), 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(inflated) + inflated + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _zip_bomb_docx() -> bytes:
    real = zipfile.ZipFile(io.BytesIO(to_docx("x", SECTIONS)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in real.infolist():
            bomb.writestr(item, real.read(item))
        bomb.writestr("word/media/padding.bin", b"\0" * (200 << 20))
    return out.getvalue()


@pytest.mark.parametrize(
    ("name", "media_type", "make", "code"),
    [
        ("encrypted PDF", PDF, _encrypted_pdf, ErrorCode.DOCUMENT_ENCRYPTED),
        ("truncated PDF", PDF, lambda: to_pdf("x", SECTIONS)[:400], ErrorCode.DOCUMENT_MALFORMED),
        ("malformed PDF", PDF, lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage", ErrorCode.DOCUMENT_MALFORMED),
        ("scanned PDF", PDF, _scanned_pdf, ErrorCode.NO_TEXT_LAYER),
        ("PDF that inflates past its budget", PDF, _bomb_pdf, ErrorCode.DOCUMENT_TOO_COMPLEX),
        ("truncated Word file", DOCX, lambda: to_docx("x", SECTIONS)[:1500], ErrorCode.DOCUMENT_TYPE_MISMATCH),
        ("zip bomb Word file", DOCX, _zip_bomb_docx, ErrorCode.DOCUMENT_TOO_COMPLEX),
        ("HTML declared as a PDF", PDF, lambda: to_html("x", SECTIONS), ErrorCode.DOCUMENT_TYPE_MISMATCH),
        ("a PDF declared as Word", DOCX, lambda: to_pdf("x", SECTIONS), ErrorCode.DOCUMENT_TYPE_MISMATCH),
        ("text declared as HTML", HTML, lambda: b"just words, no markup at all", ErrorCode.DOCUMENT_TYPE_MISMATCH),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else "",
)
def test_hostile_files_are_refused_by_name(name: str, media_type: str, make: object, code: ErrorCode) -> None:
    assert refusal(media_type, make()) is code, name  # type: ignore[operator]


@pytest.mark.parametrize("parser", ["stall", "hoard", "crash"])
def test_a_parser_that_stalls_hoards_or_dies_costs_one_document(parser: str) -> None:
    budget = ParseBudget(time_s=2, memory_bytes=256 << 20, parser=f"tests.slow_parsers:{parser}")
    assert refusal(PDF, to_pdf("x", SECTIONS), budget) is ErrorCode.DOCUMENT_TOO_COMPLEX
    assert parsed(PDF, to_pdf("x", SECTIONS)).sections  # the next document parses as usual
