"""Whether a document's bytes are of the kind it declares (a file whose declared type lies is refused)."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Final

from securechat.errors import ErrorCode
from securechat.rag.documents.model import DOCX, HTML, PDF, DocumentRefused

_MARKUP: Final = re.compile(rb"<(!doctype\s+html|html|head|body|p|div|h[1-6]|article|main|title)[\s>]", re.IGNORECASE)


def check_kind(media_type: str, data: bytes) -> None:
    """Raise DocumentRefused(document_type_mismatch) unless ``data`` is what ``media_type`` says."""
    if _kind(data) != media_type:
        raise DocumentRefused(ErrorCode.DOCUMENT_TYPE_MISMATCH)


def _kind(data: bytes) -> str | None:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return DOCX if "word/document.xml" in archive.namelist() else None
        except zipfile.BadZipFile:
            return None
    if _MARKUP.search(data[:65536]):
        return HTML
    return None
