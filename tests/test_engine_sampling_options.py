"""Stop strings, OpenAI's penalties and finish reasons, the same in both engines (tiny model, CPU)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from securechat.engine.base import ChatMessage, Engine, GenerationRequest, GenerationStats, SamplingParams
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.engine.hf import HFEngine, HFEngineConfig
from securechat.tiny_model import TINY_MODEL_NAME

PROMPT = (ChatMessage("user", "Write a few words about rivers."),)


@pytest.fixture(scope="module")
def engines(tiny_model_path: Path) -> Iterator[dict[str, Engine]]:
    batched = BatchedEngine(
        BatchedEngineConfig(model=TINY_MODEL_NAME, device="cpu", max_batch_size=4, max_new_tokens=64, core="thread")
    )
    hf = HFEngine(
        HFEngineConfig(model=TINY_MODEL_NAME, dtype="fp32", device="cpu", max_input_tokens=512, max_new_tokens=64)
    )
    asyncio.run(batched.start())
    asyncio.run(hf.start())
    yield {"batched": batched, "hf": hf}
    asyncio.run(batched.close())
    asyncio.run(hf.close())


def answer(engine: Engine, sampling: SamplingParams) -> tuple[str, GenerationStats]:
    async def run() -> tuple[str, GenerationStats]:
        pieces, stats = [], None
        async for chunk in engine.generate(GenerationRequest("r", PROMPT, sampling)):
            pieces.append(chunk.text)
            stats = chunk.stats or stats
        assert stats is not None
        return "".join(pieces), stats

    return asyncio.run(run())


@pytest.mark.parametrize("name", ["batched", "hf"])
def test_a_stop_string_ends_the_answer_before_it(engines: dict[str, Engine], name: str) -> None:
    full, full_stats = answer(engines[name], SamplingParams(max_new_tokens=40, temperature=0.9, seed=3))
    assert full_stats.finish_reason == "length" and full_stats.output_tokens == 40
    stop = full[len(full) // 2 : len(full) // 2 + 3]  # three characters from the middle of the answer
    assert stop.strip()
    cut, stats = answer(engines[name], SamplingParams(max_new_tokens=40, temperature=0.9, seed=3, stop=(stop, "§§")))
    assert cut == full[: full.index(stop)] and stop not in cut
    assert stats.finish_reason == "stop" and stats.output_tokens < 40


@pytest.mark.parametrize(
    "sampling",
    [
        SamplingParams(max_new_tokens=32, presence_penalty=1.5),
        SamplingParams(max_new_tokens=32, frequency_penalty=2.0, presence_penalty=-0.5),
        SamplingParams(max_new_tokens=32, temperature=0.8, seed=11, frequency_penalty=2.0, presence_penalty=2.0),
    ],
    ids=["presence", "frequency", "seeded"],
)
def test_penalties_change_the_answer_identically_in_both_engines(
    engines: dict[str, Engine], sampling: SamplingParams
) -> None:
    plain = SamplingParams(max_new_tokens=32, temperature=sampling.temperature, seed=sampling.seed)
    batched, _ = answer(engines["batched"], sampling)
    assert batched == answer(engines["hf"], sampling)[0]
    assert batched != answer(engines["batched"], plain)[0]


def test_bad_values_are_refused_before_any_engine() -> None:
    for bad in (
        {"stop": ("",)},
        {"stop": ("a", "b", "c", "d", "e")},
        {"presence_penalty": 2.5},
        {"frequency_penalty": float("nan")},
    ):
        with pytest.raises(ValueError):
            SamplingParams(**bad)  # type: ignore[arg-type]
