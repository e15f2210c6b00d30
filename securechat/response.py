"""Client-side reading of an encrypted response: wire bytes in, verified text (or deltas) out.

A plain answer is one choice's text; an extended one (n > 1, log probabilities, tools) arrives as deltas
(``securechat.deltas``). Both read the same way here: ``iter_deltas`` turns text into choice 0's deltas, and
``Completion`` holds every choice assembled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from securechat.deltas import Delta
from securechat.engine.base import TokenLogprob
from securechat.envelope import SealedRequest
from securechat.framing import FrameDecoder
from securechat.stream import DeltasEvent, ErrorEvent, FinalEvent, ResponseOpener, TextEvent
from securechat.structured.tool_calls import ToolCall


class ResponseFailed(Exception):
    """The service ended the stream with an error code (content-free). ``detail``: what the worker said is
    wrong with the request ({"param", "message"}), sealed, when it refused it."""

    def __init__(self, code: str, metrics: dict[str, Any] | None = None, detail: dict[str, Any] | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.metrics = metrics or {}
        self.detail = detail or {}


@dataclass(slots=True)
class Choice:
    index: int
    text: str = field(default="", repr=False)
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list, repr=False)
    finish_reason: str | None = None

    def add(self, delta: Delta) -> None:
        self.text += delta.text
        self.tool_calls += delta.tool_calls
        self.logprobs += delta.logprobs
        self.finish_reason = delta.finish_reason or self.finish_reason


@dataclass(slots=True)
class Completion:
    request_id: str
    text: str  # choice 0's
    metrics: dict[str, Any] = field(default_factory=dict)
    citations: list[dict[str, Any]] = field(default_factory=list)  # a RAG answer's: n, doc_id, chunk_index, score
    choices: list[Choice] = field(default_factory=list)


def iter_deltas(chunks: Iterable[bytes], sealed: SealedRequest) -> Iterator[Delta | FinalEvent]:
    """Yield decrypted deltas (a plain answer's text as choice 0's), then the FinalEvent. Raises
    InvalidCiphertext on tampering, reordering or truncation, ResponseFailed when the stream carries an error."""
    opener = ResponseOpener.for_request(sealed.dek, sealed.request_id)
    for frame in FrameDecoder().iter_frames(chunks):
        event = opener.open(frame)
        if isinstance(event, TextEvent):
            if event.text:  # a frame of padding only (constant rate) carries nothing to show
                yield Delta(0, event.text)
        elif isinstance(event, DeltasEvent):
            yield from event.deltas
        elif isinstance(event, ErrorEvent):
            raise ResponseFailed(event.code)
        elif isinstance(event, FinalEvent):
            if event.error:
                detail = event.extra.get("detail")
                raise ResponseFailed(event.error, event.metrics, detail if isinstance(detail, dict) else None)
            yield event
    opener.finish()


def iter_text(chunks: Iterable[bytes], sealed: SealedRequest) -> Iterator[str | FinalEvent]:
    """Choice 0's text pieces, then the FinalEvent (``iter_deltas`` for everything else)."""
    for item in iter_deltas(chunks, sealed):
        if isinstance(item, FinalEvent):
            yield item
        elif item.index == 0 and item.text:
            yield item.text


def read_completion(chunks: Iterable[bytes], sealed: SealedRequest) -> Completion:
    """Decrypt a whole response (e.g. the bytes of ``curl --output out.bin``)."""
    deltas: list[Delta] = []
    final = FinalEvent()
    for item in iter_deltas(chunks, sealed):
        if isinstance(item, FinalEvent):
            final = item
        else:
            deltas.append(item)
    return completion_of(sealed.request_id, deltas, final)


def completion_of(request_id: str, deltas: Iterable[Delta], final: FinalEvent) -> Completion:
    choices: dict[int, Choice] = {}
    for delta in deltas:
        choices.setdefault(delta.index, Choice(delta.index)).add(delta)
    first = choices.setdefault(0, Choice(0))
    if first.finish_reason is None:  # a plain answer: its end is in the worker's metrics
        reason = final.metrics.get("finish_reason")
        first.finish_reason = reason if reason in ("stop", "length") else "stop"
    citations = final.extra.get("citations")
    return Completion(
        request_id=request_id,
        text=first.text,
        metrics=final.metrics,
        citations=list(citations) if isinstance(citations, list) else [],
        choices=[choices[index] for index in sorted(choices)],
    )
