"""Both engines with the tiny model: constrained decoding keeps even random weights' output valid, tool calls
validate, log probabilities are the sampling distribution's, and n choices share one prefill."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonschema
import pytest

from securechat.engine.base import (
    ChatMessage,
    Engine,
    EngineError,
    GenerationRequest,
    SamplingParams,
    TextChunk,
)
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.engine.batched.engine_thread import EngineThread
from securechat.engine.hf import HFEngine, HFEngineConfig
from securechat.structured.grammar import output_grammar
from securechat.structured.spec import Forced, OutputSpec, ResponseFormat, Tool
from securechat.structured.tool_calls import ToolCallParser
from securechat.tiny_model import TINY_MODEL_NAME

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        "role": {"anyOf": [{"const": "admin"}, {"type": "null"}]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
WEATHER = Tool(
    "get_weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "The weather in a city",
)
MESSAGES = (ChatMessage("user", "Describe a person as JSON."),)


def _batched() -> BatchedEngine:
    config = BatchedEngineConfig(
        model=TINY_MODEL_NAME, device="cpu", max_batch_size=8, max_input_tokens=512, max_new_tokens=160, core="thread"
    )
    return BatchedEngine(config)


def _hf() -> HFEngine:
    return HFEngine(HFEngineConfig(model=TINY_MODEL_NAME, dtype="fp32", max_input_tokens=512, max_new_tokens=160))


@pytest.fixture(scope="module", params=["batched", "hf"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine: Engine = _batched() if request.param == "batched" else _hf()
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def batched() -> Iterator[BatchedEngine]:
    engine = _batched()
    asyncio.run(engine.start())
    yield engine
    asyncio.run(engine.close())


def run(engine: Engine, request: GenerationRequest) -> list[TextChunk]:
    async def collect() -> list[TextChunk]:
        chunks: list[TextChunk] = []
        generation: AsyncIterator[TextChunk] = engine.generate(request)
        async for chunk in generation:
            chunks.append(chunk)
        return chunks

    return asyncio.run(collect())


def request(spec: OutputSpec | None = None, *, seed: int = 0, n: int = 1, **sampling: Any) -> GenerationRequest:
    params = SamplingParams(**{"max_new_tokens": 160, "temperature": 1.0, "seed": seed, **sampling})
    grammar = output_grammar(spec) if spec is not None else None
    tools = spec.prompt_tools() if spec is not None else ()
    return GenerationRequest("r", MESSAGES, params, n=n, tools=tools, grammar=grammar)


def text_of(chunks: list[TextChunk], index: int = 0) -> str:
    return "".join(chunk.text for chunk in chunks if chunk.index == index and chunk.stats is None)


def test_json_schema_output_validates_for_every_seed(engine: Engine) -> None:
    spec = OutputSpec(ResponseFormat("json_schema", PERSON, "person"))
    for seed in range(12):
        chunks = run(engine, request(spec, seed=seed))
        assert chunks[-1].stats is not None and chunks[-1].stats.finish_reason == "stop"
        jsonschema.validate(json.loads(text_of(chunks)), PERSON)


def test_json_object_mode_gives_an_object(engine: Engine) -> None:
    spec = OutputSpec(ResponseFormat("json_object"))
    chunks = run(engine, request(spec, seed=1, temperature=0.0, max_new_tokens=40))
    text = text_of(chunks)
    assert text.startswith("{")
    if chunks[-1].stats is not None and chunks[-1].stats.finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_forced_and_required_tool_calls_validate(engine: Engine) -> None:
    for choice in ("required", Forced("get_weather")):
        spec = OutputSpec(tools=(WEATHER,), tool_choice=choice, parallel_tool_calls=False)
        for seed in range(4):
            parser = ToolCallParser()
            content, calls = parser.push(text_of(run(engine, request(spec, seed=seed))))
            assert content + parser.flush() == "" and [call.name for call in calls] == ["get_weather"]
            jsonschema.validate(json.loads(calls[0].arguments), WEATHER.parameters)


def test_log_probabilities_follow_the_tokens(engine: Engine) -> None:
    chunks = run(engine, request(seed=3, temperature=0.0, max_new_tokens=6, logprobs=True, top_logprobs=3))
    logprobs = [entry for chunk in chunks for entry in chunk.logprobs]
    assert len(logprobs) == 6 and chunks[-1].stats is not None and chunks[-1].stats.output_tokens == 6
    for entry in logprobs:
        values = [value for _, value in entry.top]
        assert len(values) == 3 and values == sorted(values, reverse=True) and all(v <= 0 for v in values)
        assert entry.top[0] == (entry.token, entry.logprob)  # greedy: the chosen token is the likeliest
    assert b"".join(entry.token for entry in logprobs).decode(errors="replace") == text_of(chunks)


def test_logprobs_see_the_grammar_mask(engine: Engine) -> None:
    """After the mask, only allowed tokens carry probability: the first token of a JSON object is '{'."""
    spec = OutputSpec(ResponseFormat("json_schema", PERSON, "person"))
    chunks = run(engine, request(spec, seed=2, logprobs=True, top_logprobs=5, max_new_tokens=4))
    first = next(entry for chunk in chunks for entry in chunk.logprobs)
    assert first.token.startswith(b"{") and math.isclose(first.logprob, 0.0, abs_tol=1e-4)
    assert all(token.startswith(b"{") for token, _ in first.top)


def test_n_choices_are_their_seeds_and_end_on_their_own(engine: Engine) -> None:
    together = run(engine, request(seed=10, n=3, max_new_tokens=8))
    finishes = {chunk.index: chunk.finish_reason for chunk in together if chunk.finish_reason}
    assert finishes == {0: "length", 1: "length", 2: "length"}
    assert together[-1].stats is not None and together[-1].stats.output_tokens == 24
    for index in range(3):
        alone = run(engine, request(seed=10 + index, max_new_tokens=8))
        assert text_of(together, index) == text_of(alone)
    assert len({text_of(together, index) for index in range(3)}) == 3


def test_n_choices_share_one_prefill(batched: BatchedEngine) -> None:
    client = batched.core_client
    assert isinstance(client, EngineThread) and client.core is not None
    runner = client.core.runner
    before = runner.prefilled_tokens
    run(batched, request(seed=1, n=4, max_new_tokens=3))
    prompt_tokens = batched.count_tokens(MESSAGES)
    assert runner.prefilled_tokens - before == prompt_tokens  # not 4 x


def test_a_schema_is_compiled_once_per_worker(batched: BatchedEngine) -> None:
    client = batched.core_client
    assert isinstance(client, EngineThread) and client.core is not None
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    spec = OutputSpec(ResponseFormat("json_schema", schema, "ok"))
    run(batched, request(spec, seed=0, max_new_tokens=20))
    compiled = client.core.grammars.compilations
    for seed in range(1, 4):
        run(batched, request(spec, seed=seed, max_new_tokens=20))
    assert client.core.grammars.compilations == compiled


def test_a_grammar_that_does_not_compile_fails_the_request_not_the_engine(engine: Engine) -> None:
    bad = GenerationRequest("r", MESSAGES, SamplingParams(max_new_tokens=4), grammar='{"type": "structural_tag"}')
    with pytest.raises(EngineError) as failed:
        run(engine, bad)
    assert str(failed.value) == "grammar_invalid"
    assert text_of(run(engine, request(seed=1, max_new_tokens=3)))  # still serving


def test_a_grammar_ends_its_sequence_even_with_eos_disabled() -> None:
    """Benchmarks disable EOS; a constrained sequence still ends when its grammar takes the stop token."""
    config = BatchedEngineConfig(
        model=TINY_MODEL_NAME, device="cpu", max_new_tokens=160, max_input_tokens=512, disable_eos=True, core="thread"
    )
    engine = BatchedEngine(config)
    asyncio.run(engine.start())
    try:
        spec = OutputSpec(ResponseFormat("json_schema", PERSON, "person"))
        constrained = run(engine, request(spec, seed=4))
        free = run(engine, request(seed=4, max_new_tokens=20))
    finally:
        asyncio.run(engine.close())
    assert constrained[-1].stats is not None and constrained[-1].stats.finish_reason == "stop"
    jsonschema.validate(json.loads(text_of(constrained)), PERSON)
    assert free[-1].stats is not None and free[-1].stats.output_tokens == 20
