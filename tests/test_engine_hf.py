from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, BatchEncoding

from securechat.engine.base import (
    ChatMessage,
    EngineDeadError,
    EngineError,
    GenerationRequest,
    SamplingParams,
    TextChunk,
)
from securechat.engine.hf import HFEngine, HFEngineConfig
from securechat.tiny_model import TINY_MODEL_NAME

MESSAGES = (ChatMessage("system", "You are terse."), ChatMessage("user", "Name three colours, please."))


def _config(**overrides: Any) -> HFEngineConfig:
    fields: dict[str, Any] = {
        "model": TINY_MODEL_NAME,
        "dtype": "fp32",
        "max_input_tokens": 256,
        "device": "cpu",
    }
    return HFEngineConfig(**{**fields, **overrides})


def _started(config: HFEngineConfig) -> HFEngine:
    engine = HFEngine(config)
    asyncio.run(engine.start())
    return engine


@pytest.fixture(scope="module")
def engine(tiny_model_path: Path) -> Iterator[HFEngine]:
    engine = _started(_config())
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def no_eos_engine(tiny_model_path: Path) -> Iterator[HFEngine]:
    engine = _started(_config(disable_eos=True, max_new_tokens=2000))
    yield engine
    asyncio.run(engine.close())


def _request(**sampling: Any) -> GenerationRequest:
    return GenerationRequest(request_id="req-1", messages=MESSAGES, sampling=SamplingParams(**sampling))


async def _collect(chunks: AsyncIterator[TextChunk]) -> list[TextChunk]:
    return [chunk async for chunk in chunks]


def _run(engine: HFEngine, request: GenerationRequest) -> tuple[str, list[TextChunk]]:
    chunks = asyncio.run(_collect(engine.generate(request)))
    return "".join(chunk.text for chunk in chunks), chunks


def _generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "securechat-hf-generate"]


def test_answers_a_chat_prompt_quickly(engine: HFEngine) -> None:
    started = time.perf_counter()
    text, chunks = _run(engine, _request(max_new_tokens=32, temperature=1.0, seed=7))
    assert time.perf_counter() - started < 5
    assert text.strip()
    assert all(chunk.stats is None for chunk in chunks[:-1])
    final = chunks[-1]
    assert final.text == "" and final.num_tokens == 0 and final.stats is not None


def _reference_generate(tiny_model_path: Path, **generate_kwargs: Any) -> tuple[str, int, int]:
    """Plain ``model.generate`` on the same prompt: (decoded text, num generated ids, num prompt ids)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    conversation = [{"role": m.role, "content": m.content} for m in MESSAGES]
    prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt")
    assert isinstance(prompt, BatchEncoding)  # transformers 5: a dict with input_ids + attention_mask
    num_prompt_ids = int(prompt["input_ids"].shape[1])
    output = model.generate(**prompt, **generate_kwargs)
    generated = output[0, num_prompt_ids:]  # [T]
    text = tokenizer.decode(generated, skip_special_tokens=True)
    assert isinstance(text, str)
    return text, generated.numel(), num_prompt_ids


def test_greedy_matches_model_generate(engine: HFEngine, tiny_model_path: Path) -> None:
    text, chunks = _run(engine, _request(max_new_tokens=24))
    expected_text, num_generated, num_prompt = _reference_generate(tiny_model_path, do_sample=False, max_new_tokens=24)
    assert text == expected_text
    stats = chunks[-1].stats
    assert stats is not None
    assert stats.output_tokens == num_generated
    assert stats.input_tokens == num_prompt


def test_seeded_sampling_matches_model_generate(engine: HFEngine, tiny_model_path: Path) -> None:
    # Greedy output of random weights is degenerate; sampled text checks the streamed pieces for real.
    text, chunks = _run(engine, _request(max_new_tokens=48, temperature=0.9, top_p=0.9, seed=11))
    torch.manual_seed(11)
    expected_text, num_generated, _ = _reference_generate(
        tiny_model_path, do_sample=True, temperature=0.9, top_p=0.9, top_k=0, max_new_tokens=48
    )
    assert text == expected_text
    assert len(set(text)) > 10
    stats = chunks[-1].stats
    assert stats is not None and stats.output_tokens == num_generated


def test_seeded_sampling_is_reproducible_and_seeds_differ(engine: HFEngine) -> None:
    first, _ = _run(engine, _request(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=1))
    again, _ = _run(engine, _request(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=1))
    other, _ = _run(engine, _request(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=2))
    assert first == again
    assert first != other


def test_stats_are_consistent(no_eos_engine: HFEngine) -> None:
    _, chunks = _run(no_eos_engine, _request(max_new_tokens=40, temperature=1.0, seed=3))
    stats = chunks[-1].stats
    assert stats is not None
    assert stats.output_tokens == 40  # EOS disabled: exactly the budget
    assert stats.input_tokens == no_eos_engine.count_tokens(MESSAGES)
    assert sum(chunk.num_tokens for chunk in chunks) <= stats.output_tokens
    assert 0 < stats.ttft_ms <= stats.total_ms
    assert stats.tokens_per_sec > 0


def test_max_new_tokens_is_honoured(engine: HFEngine, tiny_model_path: Path) -> None:
    for max_new_tokens in (1, 5):
        _, chunks = _run(engine, _request(max_new_tokens=max_new_tokens, temperature=1.0, seed=0))
        stats = chunks[-1].stats
        assert stats is not None and 1 <= stats.output_tokens <= max_new_tokens

    capped = _started(_config(max_new_tokens=6, disable_eos=True))
    _, chunks = _run(capped, _request(max_new_tokens=50, temperature=1.0, seed=0))
    stats = chunks[-1].stats
    assert stats is not None and stats.output_tokens == 6  # the engine's cap wins


def test_prompt_too_long_is_refused_before_generating(engine: HFEngine) -> None:
    long_messages = (ChatMessage("user", "secret words " * 200),)
    request = GenerationRequest(request_id="req-long", messages=long_messages)
    with pytest.raises(EngineError) as excinfo:
        _run(engine, request)
    assert str(excinfo.value) == "prompt_too_long"
    assert not _generation_threads()


def test_closing_the_stream_stops_generation_promptly(no_eos_engine: HFEngine) -> None:
    async def scenario() -> float:
        stream = no_eos_engine.generate(_request(max_new_tokens=2000, temperature=1.0, seed=5))
        await anext(stream)
        assert _generation_threads()
        closing = time.perf_counter()
        await stream.aclose()  # type: ignore[attr-defined]
        return time.perf_counter() - closing

    # 2000 tokens take seconds on CPU; a working stop ends the thread within a step or two.
    assert asyncio.run(scenario()) < 1.0
    assert not _generation_threads()


def test_cancelling_the_consumer_stops_generation(no_eos_engine: HFEngine) -> None:
    async def scenario() -> None:
        first_chunk = asyncio.Event()

        async def consume() -> None:
            async for _ in no_eos_engine.generate(_request(max_new_tokens=2000, temperature=1.0, seed=6)):
                first_chunk.set()

        task = asyncio.create_task(consume())
        await first_chunk.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=2.0)

    asyncio.run(scenario())
    assert not _generation_threads()


def test_event_loop_stays_responsive(no_eos_engine: HFEngine) -> None:
    async def scenario() -> list[float]:
        gaps: list[float] = []
        done = False

        async def ticker() -> None:
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticking = asyncio.create_task(ticker())
        await _collect(no_eos_engine.generate(_request(max_new_tokens=300, temperature=1.0, seed=8)))
        done = True
        await ticking
        return gaps

    gaps = asyncio.run(scenario())
    assert len(gaps) >= 10
    assert max(gaps) < 0.25


def test_failure_in_generation_thread_is_content_free(engine: HFEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret prompt text")

    monkeypatch.setattr(engine._model, "generate", boom)
    with pytest.raises(EngineError) as excinfo:
        _run(engine, _request(max_new_tokens=4))
    assert not isinstance(excinfo.value, EngineDeadError)
    assert "RuntimeError" in str(excinfo.value)
    assert "secret" not in str(excinfo.value)
    assert excinfo.value.__cause__ is None and excinfo.value.__context__ is None


def test_use_before_start_is_an_engine_error(tiny_model_path: Path) -> None:
    engine = HFEngine(_config())
    with pytest.raises(EngineError, match="engine_not_started"):
        engine.count_tokens(MESSAGES)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"quantization": "int8", "dtype": "bf16"}, "CUDA"),
        ({"dtype": "fp16"}, "fp32 or bf16"),
    ],
)
def test_cpu_incompatible_settings_fail_clearly(overrides: dict[str, Any], expected: str) -> None:
    engine = HFEngine(_config(**overrides))
    with pytest.raises(EngineDeadError, match=expected):
        asyncio.run(engine.start())


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash_attn is installed")
def test_flash_attention_without_flash_attn_fails_clearly() -> None:
    engine = HFEngine(_config(attn_implementation="flash_attention_2", dtype="bf16"))
    with pytest.raises(EngineDeadError, match="flash_attn package"):
        asyncio.run(engine.start())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_device_without_cuda_fails_clearly() -> None:
    with pytest.raises(EngineDeadError, match="CUDA is not available"):
        asyncio.run(HFEngine(_config(device="cuda")).start())


@pytest.mark.parametrize(
    "overrides",
    [{"dtype": "fp64"}, {"quantization": "int4"}, {"attn_implementation": "flex"}, {"max_input_tokens": 0}],
)
def test_config_validation(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _config(**overrides)


def test_cuda_faults_kill_the_engine_but_other_failures_do_not() -> None:
    import torch

    from securechat.engine.hf_thread import device_broken

    assert device_broken(RuntimeError("CUDA error: device-side assert triggered"))
    assert device_broken(torch.AcceleratorError("illegal memory access"))
    assert not device_broken(torch.OutOfMemoryError("CUDA out of memory"))
    assert not device_broken(ValueError("bad input"))
