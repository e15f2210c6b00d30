"""Every chat-completions parameter is honoured or refused with 400 naming it, checked with the openai package
against workers running the real (tiny) model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from securechat.client import SecureChatClient
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.proxy import create_proxy_app
from securechat.tiny_model import TINY_MODEL_NAME
from tests.client_harness import LocalService, TrustFiles, make_worker, serve_asgi, serve_gateway

WORKER_LIMIT = 48  # the worker's own cap on new tokens
MESSAGES: list[Any] = [{"role": "user", "content": "Tell me about the sea."}]


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="module")
def service(trust: TrustFiles, tiny_model_path: Path) -> Iterator[LocalService]:
    engine = BatchedEngine(
        BatchedEngineConfig(model=TINY_MODEL_NAME, device="cpu", max_batch_size=4, max_new_tokens=64, core="thread")
    )
    worker = make_worker("w0", trust.root, engine=engine, max_new_tokens=WORKER_LIMIT)
    with serve_gateway([worker]) as running:
        yield running
    asyncio.run(engine.close())


@pytest.fixture(scope="module")
def sdk(service: LocalService, trust: TrustFiles) -> Iterator[SecureChatClient]:
    with SecureChatClient(trust.client_config(service.url)) as client:
        yield client


@pytest.fixture(scope="module")
def api(service: LocalService, trust: TrustFiles) -> Iterator[openai.OpenAI]:
    with serve_asgi(create_proxy_app(lambda: SecureChatClient(trust.client_config(service.url))), lifespan="on") as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def create(api: openai.OpenAI, **kwargs: Any) -> Any:
    return api.chat.completions.create(model="securechat", messages=MESSAGES, **kwargs)


def test_stop_ends_the_answer_before_it_with_finish_reason_stop(api: openai.OpenAI) -> None:
    full = create(api, max_tokens=40, temperature=0.9, seed=5)
    text = full.choices[0].message.content
    assert full.choices[0].finish_reason == "length" and full.usage.completion_tokens == 40
    stop = text[len(text) // 2 : len(text) // 2 + 4]
    cut = create(api, max_tokens=40, temperature=0.9, seed=5, stop=[stop, "@@@@"])
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    chunks = list(create(api, max_tokens=40, temperature=0.9, seed=5, stop=stop, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text[: text.index(stop)] and chunks[-1].choices[0].finish_reason == "stop"


def test_an_answer_cut_by_the_workers_cap_says_length(api: openai.OpenAI) -> None:
    reply = create(api, max_tokens=500, temperature=0.9, seed=2)  # more than the worker allows
    assert reply.usage.completion_tokens == WORKER_LIMIT and reply.choices[0].finish_reason == "length"


def test_penalties_are_honoured_as_the_sdk_honours_them(api: openai.OpenAI, sdk: SecureChatClient) -> None:
    plain = create(api, max_tokens=32, temperature=0).choices[0].message.content
    penalized = create(api, max_tokens=32, temperature=0, presence_penalty=1.5, frequency_penalty=1.0)
    text = penalized.choices[0].message.content
    assert text != plain
    assert text == sdk.chat(MESSAGES, max_new_tokens=32, presence_penalty=1.5, frequency_penalty=1.0)


def test_an_omitted_temperature_means_openais_default_of_one(api: openai.OpenAI, sdk: SecureChatClient) -> None:
    reply = create(api, max_tokens=16, seed=9).choices[0].message.content
    assert reply == sdk.chat(MESSAGES, max_new_tokens=16, temperature=1.0, seed=9)
    assert reply != sdk.chat(MESSAGES, max_new_tokens=16, temperature=0.0)


def test_parameters_that_cannot_change_the_answer_are_accepted(api: openai.OpenAI) -> None:
    reply = create(
        api,
        max_tokens=4,
        temperature=0,
        user="u1",
        metadata={"k": "v"},
        store=False,
        logprobs=False,
        response_format={"type": "text"},
        logit_bias={},
        tool_choice="none",
        parallel_tool_calls=True,
    )
    assert reply.choices[0].message.content


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"logit_bias": {"42": 10}}, "logit_bias"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"not": {}}}}},
            "response_format.json_schema.schema.not",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"uniqueItems": True}}}]},
            "tools.function.parameters.uniqueItems",
        ),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "sometimes"}, "tool_choice"),
        ({"temperature": 0.005}, "temperature"),
        ({"n": 9}, "n"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"extra_body": {"prediction": {"type": "content", "content": "x"}}}, "prediction"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"extra_body": {"repetition_penalty": 1.2}}, "repetition_penalty"),
        ({"extra_body": {"top_k": 5}}, "top_k"),
    ],
)
def test_parameters_that_would_be_dropped_are_refused_by_name(
    api: openai.OpenAI, kwargs: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        create(api, max_tokens=4, **kwargs)
    assert refused.value.body["param"] == param  # type: ignore[index]


def test_another_model_is_not_found(api: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
