"""How retrieved chunks enter the prompt (the documented template).

The chunks, best first, are numbered and put into a system message ahead of the conversation (after any system
message of the caller's own, which keeps its place)::

    Answer the user with the help of the numbered excerpts from their documents below. Cite the excerpts you
    use as [1], [2], ... If the excerpts do not contain the answer, say so.

    [1] <document title>, page <p>, "<heading>"
    <chunk text>

    [2] ...

(the page for a PDF, the heading where the document has one). With no chunk (an empty collection), the system
message says that no excerpt matched. The citations returned in the answer's sealed final frame use the same
numbering: ``[{"n": 1, "doc_id", "chunk_index", "score", "title", "page", "heading", "text"}, ...]``: where
each excerpt is, and the excerpt itself.
"""

from __future__ import annotations

from typing import Any, Final

from securechat.engine.base import ChatMessage
from securechat.rag.index import Hit

INSTRUCTION: Final = (
    "Answer the user with the help of the numbered excerpts from their documents below. Cite the excerpts you "
    "use as [1], [2], ... If the excerpts do not contain the answer, say so."
)
NO_EXCERPTS: Final = "No excerpt from the user's documents matched this question."


def with_excerpts(messages: tuple[ChatMessage, ...], hits: list[Hit]) -> tuple[ChatMessage, ...]:
    if hits:
        blocks = [f"[{n}] {place(hit)}\n{hit.ref.text}" for n, hit in enumerate(hits, 1)]
        content = INSTRUCTION + "\n\n" + "\n\n".join(blocks)
    else:
        content = INSTRUCTION + "\n\n" + NO_EXCERPTS
    leading = 1 if messages and messages[0].role == "system" else 0
    return (*messages[:leading], ChatMessage("system", content), *messages[leading:])


def place(hit: Hit) -> str:
    """Where an excerpt is: its document's title (else its id), page, heading."""
    parts = [hit.ref.title or f"document {hit.ref.doc_id}"]
    if hit.ref.page is not None:
        parts.append(f"page {hit.ref.page}")
    if hit.ref.heading:
        parts.append(f'"{hit.ref.heading}"')
    return ", ".join(parts)


def citations(hits: list[Hit]) -> list[dict[str, Any]]:
    return [
        {
            "n": n,
            "doc_id": hit.ref.doc_id,
            "chunk_index": hit.ref.index,
            "score": round(hit.score, 4),
            "title": hit.ref.title or None,
            "page": hit.ref.page,
            "heading": hit.ref.heading,
            "text": hit.ref.text,
        }
        for n, hit in enumerate(hits, 1)
    ]
