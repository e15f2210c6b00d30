"""When answer text leaves a worker: the first text at once, then on a fixed cadence, then at the end.

The engine produces text at token cadence; sending it that way would show the host every token's timing (and,
unpadded, its length). ``paced`` turns an engine's chunk stream into flushes: the first text is flushed as soon
as it exists (time to first token does not grow), later text accumulates and is flushed every
``flush_interval_ms`` on a clock of its own, and whatever remains is flushed with the stats when the engine
finishes. With ``constant_rate`` a tick with nothing new still flushes (an empty flush becomes one frame of
padding), so between the first text and the end the host sees one flush per interval whatever the engine did.

The engine is read by a pump task, so ticks keep time while the engine is between chunks; closing the flush
generator cancels the pump, which closes the engine's generator (its request leaves the batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from securechat.engine.base import EngineError, GenerationStats, TextChunk


@dataclass(frozen=True, slots=True)
class Flush:
    chunks: tuple[TextChunk, ...] = field(default=(), repr=False)  # what the engine made since the last flush
    stats: GenerationStats | None = None  # set on the last flush only

    @property
    def text(self) -> str:
        """The text of every chunk (a plain answer's: one choice)."""
        return "".join(chunk.text for chunk in self.chunks)


@dataclass(slots=True)
class _Pumped:
    pieces: list[TextChunk] = field(default_factory=list)
    stats: GenerationStats | None = None

    def take(self) -> tuple[TextChunk, ...]:
        chunks = tuple(self.pieces)
        self.pieces.clear()
        return chunks


def _shows_something(chunk: TextChunk) -> bool:
    return bool(chunk.text or chunk.logprobs or chunk.finish_reason)


async def paced(
    chunks: AsyncIterator[TextChunk], flush_interval_s: float, *, constant_rate: bool = False
) -> AsyncGenerator[Flush, None]:
    """Flushes of ``chunks``; the last one carries the stats. An engine error is raised from here, after a flush
    of whatever text the engine produced before it."""
    loop = asyncio.get_running_loop()
    pumped = _Pumped()
    first_text = loop.create_future()

    async def pump() -> None:
        try:
            async for chunk in chunks:
                if _shows_something(chunk):
                    pumped.pieces.append(chunk)
                    if not first_text.done() and chunk.text:
                        first_text.set_result(None)
                if chunk.stats is not None:
                    pumped.stats = chunk.stats
                    return
        finally:
            if not first_text.done():
                first_text.set_result(None)
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()

    task = asyncio.create_task(pump())
    try:
        await first_text  # resolved by the first text, or when the engine ends without any
        if not task.done():
            yield Flush(pumped.take())
            next_tick = loop.time() + flush_interval_s
            while True:
                delay = next_tick - loop.time()
                if delay > 0:
                    await asyncio.wait([task], timeout=delay)  # wakes at the tick, or when the engine ends
                if task.done():
                    break
                taken = pumped.take()
                if taken or constant_rate:
                    yield Flush(taken)
                # A fixed cadence; after a stall (a slow consumer), the clock restarts instead of catching up.
                next_tick += flush_interval_s
                if next_tick <= loop.time():
                    next_tick = loop.time() + flush_interval_s
        error = task.exception()
        if error is not None:  # the text that made it out of the engine first still goes, then the error
            if pumped.pieces:
                yield Flush(pumped.take())
            raise error
        if pumped.stats is None:
            raise EngineError("engine_stream_ended_without_stats")
        yield Flush(pumped.take(), pumped.stats)
    finally:
        if not task.done():
            task.cancel()
        # Wait for the pump: its engine generator is closed by then. Its outcome was used above, or is moot.
        await asyncio.gather(task, return_exceptions=True)
