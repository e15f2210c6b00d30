"""Structured outputs, tools, log probabilities and n through the SDK, a gateway and a worker with the real
batched engine (tiny model, in-process): what the application gets, and what the host never sees."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import httpx
import jsonschema
import pytest

from securechat.client import ResponseFailed, SecureChatClient
from securechat.engine.batched import BatchedEngine, BatchedEngineConfig
from securechat.structured.spec import InvalidOutputSpec
from securechat.tiny_model import TINY_MODEL_NAME
from tests.client_harness import LocalService, RecordingTransport, TrustFiles, make_worker, serve_gateway

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 12},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"enum": ["new", "used"]}, "maxItems": 2},
    },
    "required": ["title", "rating", "tags"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "review", "schema": SCHEMA, "strict": True}}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["c", "f"]}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> TrustFiles:
    return TrustFiles.create(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="module")
def service(trust: TrustFiles) -> Iterator[LocalService]:
    config = BatchedEngineConfig(
        model=TINY_MODEL_NAME, device="cpu", max_batch_size=8, max_input_tokens=1024, max_new_tokens=160, core="thread"
    )
    worker = make_worker("w0", trust.root, engine=BatchedEngine(config), max_new_tokens=160)
    with serve_gateway([worker]) as running:
        yield running


@pytest.fixture
def client(service: LocalService, trust: TrustFiles) -> Iterator[SecureChatClient]:
    with SecureChatClient(trust.client_config(service.url)) as sdk:
        yield sdk


def test_json_schema_answers_validate_over_many_seeds(client: SecureChatClient) -> None:
    for seed in range(10):
        completion = client.complete("Review this phone.", response_format=FORMAT, temperature=1.0, seed=seed)
        assert completion.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(completion.text), SCHEMA)


def test_a_full_tool_round_trip(client: SecureChatClient) -> None:
    question = {"role": "user", "content": "What is the weather in Oslo?"}
    first = client.complete([question], tools=TOOLS, tool_choice="required", temperature=1.0, seed=2)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.text == "" and len(choice.tool_calls) >= 1
    call = choice.tool_calls[0]
    assert call.name == "get_weather" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.arguments), TOOLS[0]["function"]["parameters"])  # type: ignore[index]
    history = [
        question,
        {"role": "assistant", "content": None, "tool_calls": [call.to_dict()]},
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 4})},
    ]
    final = client.complete(history, tools=TOOLS, tool_choice="none", max_new_tokens=12, temperature=0.8, seed=3)
    assert final.text and final.choices[0].tool_calls == [] and final.choices[0].finish_reason == "length"


def test_n_choices_with_log_probabilities(client: SecureChatClient) -> None:
    completion = client.complete("Hi", n=3, logprobs=True, top_logprobs=2, max_new_tokens=5, temperature=1.0, seed=7)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    for choice in completion.choices:
        assert choice.finish_reason == "length" and len(choice.logprobs) == 5
        assert all(len(entry.top) == 2 and entry.logprob <= 0 for entry in choice.logprobs)
    assert completion.metrics["output_tokens"] == 15
    with client.open_stream("Hi", n=2, max_new_tokens=3, temperature=1.0, seed=1) as opened:
        indices = {delta.index for delta in opened.deltas()}
    assert indices == {0, 1}


def test_what_the_worker_cannot_keep_is_refused_before_sealing(client: SecureChatClient, service: LocalService) -> None:
    sent = service.paths["/infer"]
    with pytest.raises(InvalidOutputSpec) as refused:
        client.complete(
            "x", response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {"not": {}}}}
        )
    assert refused.value.param == "response_format.json_schema.schema.not"
    with pytest.raises(ValueError, match="n is 1 to 8"):
        client.complete("x", n=9)
    assert service.paths["/infer"] == sent  # nothing went out


def test_the_worker_refuses_sealed_what_slipped_past_a_client(
    client: SecureChatClient, service: LocalService, trust: TrustFiles
) -> None:
    """A body built by another client, with a keyword the grammar cannot keep: the refusal names it, sealed."""
    body = json.dumps(
        {
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"uniqueItems": True}}},
        }
    ).encode()
    with pytest.raises(ResponseFailed) as refused, client.open_sealed("plain", body, "/infer") as opened:
        opened.read()
    assert refused.value.code == "invalid_request"
    assert refused.value.detail["param"] == "response_format.json_schema.schema.uniqueItems"


def test_schemas_tool_names_and_arguments_never_reach_the_host(
    service: LocalService, trust: TrustFiles, caplog: pytest.LogCaptureFixture
) -> None:
    canary = f"canary{uuid.uuid4().hex[:12]}"
    schema = {"type": "object", "properties": {canary: {"const": canary}}, "required": [canary]}
    tools = [{"type": "function", "function": {"name": f"fn_{canary}", "parameters": schema}}]
    recording = RecordingTransport()
    http = httpx.Client(transport=recording, timeout=60)
    with caplog.at_level(logging.DEBUG), SecureChatClient(trust.client_config(service.url), http=http) as client:
        structured = client.complete(
            "x", response_format={"type": "json_schema", "json_schema": {"name": canary, "schema": schema}}
        )
        called = client.complete("x", tools=tools, tool_choice="required", parallel_tool_calls=False)
    assert json.loads(structured.text) == {canary: canary}  # the answer holds the canary: it was used
    assert called.choices[0].tool_calls[0].name == f"fn_{canary}"
    assert canary.encode() not in recording.traffic  # requests and answers crossed the host as ciphertext only
    assert "request_done" in caplog.text and "client_request_sent" in caplog.text  # the logs were captured
    assert canary not in caplog.text  # no log line, on any side of the host, names it


def test_an_engine_that_cannot_constrain_refuses_by_name(trust: TrustFiles) -> None:
    with (
        serve_gateway([make_worker("w-scripted", trust.root)]) as scripted,  # the ScriptedEngine: no grammar
        SecureChatClient(trust.client_config(scripted.url)) as client,
        pytest.raises(ResponseFailed) as refused,
    ):
        client.complete("x", tools=TOOLS, tool_choice="required")
    assert refused.value.detail == {"param": "tools", "message": "this worker's engine does not constrain its output"}
