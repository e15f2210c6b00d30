"""Test doubles for the engine contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from securechat.engine.base import ChatMessage, Engine, GenerationRequest, GenerationStats, TextChunk


class ScriptedEngine(Engine):
    """Streams a fixed list of chunks; can fail after ``fail_after`` chunks with a given exception."""

    def __init__(
        self,
        chunks: Sequence[str] = ("Hello", ", ", "world"),
        fail_after: int | None = None,
        failure: Exception | None = None,
        delay_s: float = 0.0,
        fail_start: bool = False,
        max_concurrent_requests: int = 1,
    ) -> None:
        self.chunks = list(chunks)
        self.fail_after = fail_after
        self.failure = failure
        self.delay_s = delay_s
        self.fail_start = fail_start
        self.max_concurrent_requests = max_concurrent_requests
        self.seen: list[GenerationRequest] = []
        self.closed_early = 0

    async def start(self) -> None:
        if self.fail_start:
            raise RuntimeError("boom")

    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        return sum(len(m.content.split()) for m in messages)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextChunk]:
        self.seen.append(request)
        sent = 0
        try:
            for index, text in enumerate(self.chunks):
                if self.fail_after is not None and index == self.fail_after:
                    assert self.failure is not None
                    raise self.failure
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                sent += 1
                yield TextChunk(text=text, num_tokens=1)
        except GeneratorExit:
            self.closed_early += 1
            raise
        stats = GenerationStats(ttft_ms=1.0, total_ms=10.0, input_tokens=3, output_tokens=sent)
        yield TextChunk(text="", num_tokens=0, stats=stats)
