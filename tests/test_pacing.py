"""The flush cadence of an answer: first text at once, then a fixed clock, then the end."""

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import pytest

from securechat.engine.base import EngineError, GenerationStats, TextChunk
from securechat.pacing import Flush, paced

STATS = GenerationStats(ttft_ms=1.0, total_ms=2.0, input_tokens=1, output_tokens=1)


async def engine(script: Sequence[tuple[float, str]], *, fail: bool = False, log: list[str] | None = None):  # type: ignore[no-untyped-def]
    """Yields each (delay_s, text) after its delay, then the stats (or raises EngineError)."""
    try:
        for delay_s, text in script:
            await asyncio.sleep(delay_s)
            yield TextChunk(text, 1)
        if fail:
            raise EngineError("boom")
        yield TextChunk("", 0, STATS)
    except (GeneratorExit, asyncio.CancelledError):
        if log is not None:
            log.append("closed")
        raise


async def timed(flushes: AsyncIterator[Flush]) -> list[tuple[float, Flush]]:
    started = time.perf_counter()
    return [(time.perf_counter() - started, flush) async for flush in flushes]


def run(script: Sequence[tuple[float, str]], interval_s: float, **kw: bool) -> list[tuple[float, Flush]]:
    return asyncio.run(timed(paced(engine(script), interval_s, **kw)))


def test_first_text_leaves_at_once_and_the_rest_on_the_clock() -> None:
    script = [(0.05, "first")] + [(0.01, "x")] * 60  # ~0.65 s of text after the first
    flushes = run(script, 0.2)
    first_at, first = flushes[0]
    assert first.text == "first" and first_at < 0.15  # not held back for a tick
    assert "".join(f.text for _, f in flushes) == "first" + "x" * 60
    assert flushes[-1][1].stats == STATS and all(f.stats is None for _, f in flushes[:-1])
    ticks = [at for at, _ in flushes[1:-1]]
    assert 2 <= len(ticks) <= 4  # ~0.65 s at 0.2 s: about three ticks, not one flush per token
    gaps = [b - a for a, b in zip([first_at, *ticks], ticks, strict=False)]
    assert all(gap > 0.15 for gap in gaps)


def test_ticks_without_text_send_nothing_unless_constant_rate() -> None:
    script = [(0.0, "a"), (0.65, "b")]  # the engine stalls for ~3 ticks
    quiet = run(script, 0.2)
    assert [f.text for _, f in quiet] == ["a", "b"]  # first text, then "b" with the stats at the end
    steady = run(script, 0.2, constant_rate=True)
    assert [f.text for _, f in steady][:1] == ["a"] and steady[-1][1].text == "b"
    assert 2 <= sum(1 for _, f in steady if f.text == "") <= 4  # a flush on every tick, text or not


def test_text_made_before_an_engine_error_still_leaves_then_the_error() -> None:
    async def scenario() -> tuple[list[str], BaseException | None]:
        seen: list[str] = []
        try:
            async for flush in paced(engine([(0.0, "a"), (0.01, "b")], fail=True), 5.0):
                seen.append(flush.text)
        except EngineError as exc:
            return seen, exc
        return seen, None

    seen, error = asyncio.run(scenario())
    assert "".join(seen) == "ab" and isinstance(error, EngineError)


def test_an_engine_that_ends_without_text_gives_one_flush_with_the_stats() -> None:
    assert [(f.text, f.stats) for _, f in run([], 0.05)] == [("", STATS)]


def test_an_engine_that_ends_without_stats_is_an_engine_error() -> None:
    async def no_stats():  # type: ignore[no-untyped-def]
        yield TextChunk("a", 1)

    async def scenario() -> None:
        async for _ in paced(no_stats(), 0.05):
            pass

    with pytest.raises(EngineError):
        asyncio.run(scenario())


def test_closing_the_flushes_closes_the_engine() -> None:
    log: list[str] = []

    async def scenario() -> None:
        flushes = paced(engine([(0.0, "a")] + [(0.01, "x")] * 100, log=log), 0.05)
        assert (await anext(flushes)).text == "a"
        await flushes.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert log == ["closed"]
