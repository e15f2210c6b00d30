"""What applications build on, through the openai package and the local proxy, against a worker running the
real (tiny) model: structured outputs, a full tool round trip, log probabilities and n, the Responses API and
text completions, streamed and not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import jsonschema
import openai
import pydantic
import pytest

from securechat.client import SecureChatClient
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.proxy import create_proxy_app
from securechat.tiny_model import TINY_MODEL_NAME
from tests.client_harness import LocalService, TrustFiles, make_worker, serve_asgi, serve_gateway

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
CHAT_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_PARAMETERS},
    }
]
RESPONSE_TOOLS: list[Any] = [
    {"type": "function", "name": "get_weather", "parameters": WEATHER_PARAMETERS, "strict": True}
]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]


class Review(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    title: str = pydantic.Field(max_length=12)
    stars: int = pydantic.Field(ge=1, le=5)
    verdict: Literal["buy", "skip"]


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="module")
def service(trust: TrustFiles, tiny_model_path: Path) -> Iterator[LocalService]:
    config = BatchedEngineConfig(
        model=TINY_MODEL_NAME, device="cpu", max_batch_size=8, max_input_tokens=1024, max_new_tokens=160, core="thread"
    )
    engine = BatchedEngine(config)
    with serve_gateway([make_worker("w0", trust.root, engine=engine, max_new_tokens=160)]) as running:
        yield running
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def api(service: LocalService, trust: TrustFiles) -> Iterator[openai.OpenAI]:
    with serve_asgi(create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url))), lifespan="on") as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


# -- chat completions ----------------------------------------------------------------------------------------
def test_parse_with_a_pydantic_model_validates_for_every_seed(api: openai.OpenAI) -> None:
    for seed in range(6):
        parsed = api.chat.completions.parse(
            model="securechat", messages=ASK, response_format=Review, temperature=1.0, seed=seed
        )
        review = parsed.choices[0].message.parsed
        assert isinstance(review, Review) and parsed.choices[0].finish_reason == "stop"


def test_json_schema_streamed_is_the_same_json(api: openai.OpenAI) -> None:
    schema = Review.model_json_schema()
    fmt: Any = {"type": "json_schema", "json_schema": {"name": "review", "schema": schema, "strict": True}}
    plain = api.chat.completions.create(model="securechat", messages=ASK, response_format=fmt, seed=4)
    chunks = api.chat.completions.create(model="securechat", messages=ASK, response_format=fmt, seed=4, stream=True)
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == plain.choices[0].message.content
    jsonschema.validate(json.loads(streamed), schema)


def test_a_full_tool_round_trip(api: openai.OpenAI) -> None:
    first = api.chat.completions.create(
        model="securechat", messages=ASK, tools=CHAT_TOOLS, tool_choice="required", parallel_tool_calls=False, seed=1
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.content is None
    assert message.tool_calls is not None and len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER_PARAMETERS)
    history = [
        *ASK,
        message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 3})},
    ]
    final = api.chat.completions.create(model="securechat", messages=history, tools=CHAT_TOOLS, max_tokens=10, seed=2)
    assert final.choices[0].finish_reason in ("stop", "length", "tool_calls")
    named = api.chat.completions.create(
        model="securechat",
        messages=ASK,
        tools=CHAT_TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        seed=3,
    )
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"  # type: ignore[index]


def test_tool_calls_stream_as_deltas(api: openai.OpenAI) -> None:
    chunks = list(
        api.chat.completions.create(
            model="securechat",
            messages=ASK,
            tools=CHAT_TOOLS,
            tool_choice="required",
            parallel_tool_calls=False,
            seed=5,
            stream=True,
        )
    )
    deltas = [tc for chunk in chunks for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices]
    assert deltas and deltas[0].id and deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert [delta.index for delta in deltas] == list(range(len(deltas)))
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    for delta in deltas:
        jsonschema.validate(json.loads(delta.function.arguments or ""), WEATHER_PARAMETERS)  # type: ignore[union-attr]


def test_logprobs_and_n(api: openai.OpenAI) -> None:
    reply = api.chat.completions.create(
        model="securechat", messages=ASK, n=3, logprobs=True, top_logprobs=4, max_tokens=6, temperature=1.0, seed=8
    )
    assert [choice.index for choice in reply.choices] == [0, 1, 2] and reply.usage is not None
    assert reply.usage.completion_tokens == 18
    for choice in reply.choices:
        assert choice.logprobs is not None and choice.logprobs.content is not None
        tokens = choice.logprobs.content
        assert len(tokens) == 6 and all(len(t.top_logprobs) == 4 and t.logprob <= 0 for t in tokens)
        assert bytes(b for t in tokens for b in t.bytes or []).decode(errors="replace") == choice.message.content
    streamed = api.chat.completions.create(
        model="securechat", messages=ASK, n=2, logprobs=True, max_tokens=4, temperature=1.0, seed=8, stream=True
    )
    texts: dict[int, str] = {0: "", 1: ""}
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts[0] == reply.choices[0].message.content[: len(texts[0])]  # type: ignore[index]


# -- the Responses API ---------------------------------------------------------------------------------------
def test_responses_text_and_streaming_events(api: openai.OpenAI) -> None:
    response = api.responses.create(model="securechat", input="Say hi.", max_output_tokens=12, temperature=0)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.output_text and response.usage is not None and response.usage.output_tokens == 12
    events = list(
        api.responses.create(model="securechat", input="Say hi.", max_output_tokens=12, temperature=0, stream=True)
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_text.done" in kinds
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == response.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_responses_structured_output_and_a_tool_round_trip(api: openai.OpenAI) -> None:
    schema = Review.model_json_schema()
    structured = api.responses.create(
        model="securechat",
        input=ASK,
        text={"format": {"type": "json_schema", "name": "review", "schema": schema, "strict": True}},
    )
    jsonschema.validate(json.loads(structured.output_text), schema)
    called = api.responses.create(model="securechat", input=ASK, tools=RESPONSE_TOOLS, tool_choice="required")
    calls = [item for item in called.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER_PARAMETERS)
    follow_up = [
        *ASK,
        calls[0].model_dump(),
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "3C"},
    ]
    answer = api.responses.create(model="securechat", input=follow_up, tools=RESPONSE_TOOLS, max_output_tokens=8)
    assert answer.output
    streamed = list(
        api.responses.create(model="securechat", input=ASK, tools=RESPONSE_TOOLS, tool_choice="required", stream=True)
    )
    done = [e for e in streamed if e.type == "response.function_call_arguments.done"]
    assert done and json.loads(done[0].arguments)["unit"] in ("c", "f")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input.0.content.0.type",
        ),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        (
            {"text": {"format": {"type": "json_schema", "name": "s", "schema": {"not": {}}}}},
            "response_format.json_schema.schema.not",
        ),
    ],
)
def test_responses_refuse_by_name(api: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    arguments = {"input": "hi", **kwargs}
    with pytest.raises(openai.BadRequestError) as refused:
        api.responses.create(model="securechat", **arguments)
    assert refused.value.body["param"] == param  # type: ignore[index]


# -- legacy text completions ---------------------------------------------------------------------------------
def test_completions_with_logprobs_streamed_and_not(api: openai.OpenAI) -> None:
    completion = api.completions.create(model="securechat", prompt="Once upon a time", logprobs=2, seed=1)
    choice = completion.choices[0]
    assert completion.usage is not None and completion.usage.completion_tokens == 16  # OpenAI's default max_tokens
    assert choice.logprobs is not None and len(choice.logprobs.tokens or []) == 16
    assert all(len(top) <= 2 for top in choice.logprobs.top_logprobs or [])
    stream = api.completions.create(model="securechat", prompt="Once upon a time", seed=1, stream=True)
    assert "".join(chunk.choices[0].text for chunk in stream if chunk.choices) == choice.text
    with pytest.raises(openai.BadRequestError) as refused:
        api.completions.create(model="securechat", prompt="x", echo=True)
    assert refused.value.body["param"] == "echo"  # type: ignore[index]


def test_a_raw_prompt_is_not_wrapped_in_the_chat_template(service: LocalService, trust: TrustFiles) -> None:
    with SecureChatClient(trust.client_config(service.url)) as sdk:
        raw = sdk.complete("Once upon a time", raw_prompt=True, max_new_tokens=4)
        chat = sdk.complete("Once upon a time", max_new_tokens=4)
    assert raw.metrics["input_tokens"] < chat.metrics["input_tokens"]
