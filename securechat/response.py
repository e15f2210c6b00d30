"""Client-side reading of an encrypted response: wire bytes in, verified text out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from securechat.envelope import SealedRequest
from securechat.framing import FrameDecoder
from securechat.stream import ErrorEvent, FinalEvent, ResponseOpener, TextEvent


class ResponseFailed(Exception):
    """The service ended the stream with an error code (content-free)."""

    def __init__(self, code: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.metrics = metrics or {}


@dataclass(slots=True)
class Completion:
    request_id: str
    text: str
    metrics: dict[str, Any] = field(default_factory=dict)
    citations: list[dict[str, Any]] = field(default_factory=list)  # a RAG answer's: n, doc_id, chunk_index, score


def iter_text(chunks: Iterable[bytes], sealed: SealedRequest) -> Iterator[str | FinalEvent]:
    """Yield decrypted text pieces, then the FinalEvent. Raises InvalidCiphertext on tampering,
    reordering or truncation, ResponseFailed when the stream carries an error."""
    opener = ResponseOpener.for_request(sealed.dek, sealed.request_id)
    for frame in FrameDecoder().iter_frames(chunks):
        event = opener.open(frame)
        if isinstance(event, TextEvent):
            if event.text:  # a frame of padding only (constant rate) carries nothing to show
                yield event.text
        elif isinstance(event, ErrorEvent):
            raise ResponseFailed(event.code)
        elif isinstance(event, FinalEvent):
            if event.error:
                raise ResponseFailed(event.error, event.metrics)
            yield event
    opener.finish()


def read_completion(chunks: Iterable[bytes], sealed: SealedRequest) -> Completion:
    """Decrypt a whole response (e.g. the bytes of ``curl --output out.bin``)."""
    pieces: list[str] = []
    final = FinalEvent()
    for item in iter_text(chunks, sealed):
        if isinstance(item, FinalEvent):
            final = item
        else:
            pieces.append(item)
    return completion_of(sealed.request_id, "".join(pieces), final)


def completion_of(request_id: str, text: str, final: FinalEvent) -> Completion:
    citations = final.extra.get("citations")
    return Completion(
        request_id=request_id,
        text=text,
        metrics=final.metrics,
        citations=list(citations) if isinstance(citations, list) else [],
    )
