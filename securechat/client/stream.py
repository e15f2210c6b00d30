"""One answer as it arrives: wire bytes from the HTTP response in, checked and decrypted text out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import httpx

from securechat.client.errors import ServiceError
from securechat.deltas import Delta
from securechat.envelope import SealedRequest
from securechat.errors import InvalidCiphertext, InvalidFrame
from securechat.logs import get_logger, log_event
from securechat.response import Completion, completion_of, iter_deltas
from securechat.stream import FinalEvent

logger = get_logger("client")


class CompletionStream:
    """Iterate for text pieces, each authenticated before it is yielded; ``metrics`` is set by the final frame.

    Tampering, reordering, splicing and truncation raise ``InvalidCiphertext`` (a stream without its
    authenticated final frame is truncated); an error frame raises ``ResponseFailed``. Iterate once.
    """

    def __init__(
        self,
        response: httpx.Response,
        sealed: SealedRequest,
        on_final: Callable[[FinalEvent], None] | None = None,
    ) -> None:
        """``on_final`` runs with the authenticated final frame, before iteration ends (e.g. to keep a collection's
        newest state counter)."""
        self._response = response
        self._sealed = sealed
        self._on_final = on_final
        self._started = time.perf_counter()
        self._consumed = False
        self._seen: list[Delta] = []
        self.metrics: dict[str, Any] | None = None
        self.final: FinalEvent | None = None  # the authenticated final frame, once read

    @property
    def request_id(self) -> str:
        return self._sealed.request_id

    def __iter__(self) -> Iterator[str]:
        """Choice 0's text pieces (all of a plain answer)."""
        for delta in self.deltas():
            if delta.index == 0 and delta.text:
                yield delta.text

    def deltas(self) -> Iterator[Delta]:
        """Every choice's deltas: text, log probabilities, tool calls, ends (``securechat.deltas``)."""
        if self._consumed:
            raise RuntimeError("a completion stream can be read only once")
        self._consumed = True
        num_pieces = 0
        try:
            for item in iter_deltas(self._chunks(), self._sealed):
                if isinstance(item, FinalEvent):
                    self.metrics = item.metrics
                    self.final = item
                    if self._on_final is not None:
                        self._on_final(item)
                else:
                    num_pieces += 1
                    self._seen.append(item)
                    yield item
        except InvalidFrame:  # cut inside a frame: truncation, reported like every other stream failure
            raise InvalidCiphertext() from None
        finally:
            self.close()
            log_event(
                logger,
                "client_response_read",
                level=logging.DEBUG,
                request_id=self.request_id,
                frames=num_pieces,
                e2e_ms=round((time.perf_counter() - self._started) * 1000, 1),
            )

    def read(self) -> Completion:
        """The whole answer (every choice), checked; the caller gets nothing unless the final frame verified."""
        for _ in self.deltas():
            pass
        assert self.final is not None  # iteration ends normally only after the final frame verified
        return completion_of(self.request_id, self._seen, self.final)

    def result(self) -> dict[str, Any]:
        """A collection operation's answer (ingest, search, embed): the ``result`` of its sealed final frame."""
        self.read()
        assert self.final is not None
        result = self.final.extra.get("result")
        if not isinstance(result, dict):
            raise InvalidCiphertext()  # authentic but not what this operation answers: refuse, do not guess
        return result

    def close(self) -> None:
        """Stop reading; closing the connection cancels the generation on the worker."""
        self._response.close()

    def __enter__(self) -> CompletionStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _chunks(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes()
        except httpx.TransportError:
            raise ServiceError(None, "connection_lost", request_id=self.request_id) from None
