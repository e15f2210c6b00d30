"""What applications build on, against the running Ray app (the batched region's tiny-model worker): the
openai package through the local proxy and the SDK directly, with structured outputs, a full tool round trip,
log probabilities and n, the Responses API and text completions; and the host never sees a schema, a tool's
name or its arguments."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pydantic
import pytest

from deployments.local import LocalApp
from securechat.client import ClientConfig, SecureChatClient
from securechat.proxy.app import create_proxy_app
from tests.client_harness import RecordingTransport, serve_asgi
from tests.ray_harness import APP_ARGS, BATCHED_REGION, emulator_ark_path, pinned_client_config, platform_root_path

pytestmark = pytest.mark.ray

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[Any] = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMETERS}}]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Oslo?"}]


class Verdict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    label: Literal["good", "bad"]
    score: int = pydantic.Field(ge=0, le=10)


@pytest.fixture(scope="module")
def config(ray_app: LocalApp, securechat_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ClientConfig:
    return pinned_client_config(
        tmp_path_factory.mktemp("trust"),
        args=APP_ARGS,
        region=BATCHED_REGION,
        release="apps",
        base_url=ray_app.base_url,
        root_public_key_path=Path(f"{platform_root_path(securechat_cache_dir)}.pub"),
        snp_ark_path=emulator_ark_path(securechat_cache_dir),
    )


@pytest.fixture(scope="module")
def api(config: ClientConfig) -> Iterator[openai.OpenAI]:
    with serve_asgi(create_proxy_app(lambda: SecureChatClient(config)), lifespan="on") as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_structured_outputs_through_the_proxy_and_the_sdk(api: openai.OpenAI, config: ClientConfig) -> None:
    for seed in range(3):
        parsed = api.chat.completions.parse(
            model="securechat", messages=ASK, response_format=Verdict, temperature=1.0, seed=seed
        )
        assert isinstance(parsed.choices[0].message.parsed, Verdict)
    schema = Verdict.model_json_schema()
    fmt = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema, "strict": True}}
    with SecureChatClient(config) as sdk:
        direct = sdk.complete(ASK, response_format=fmt, temperature=1.0, seed=0)
    jsonschema.validate(json.loads(direct.text), schema)
    assert direct.choices[0].finish_reason == "stop"


def test_a_tool_round_trip_through_the_proxy(api: openai.OpenAI) -> None:
    first = api.chat.completions.create(
        model="securechat", messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False, seed=2
    )
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    jsonschema.validate(json.loads(call.function.arguments), PARAMETERS)  # type: ignore[union-attr]
    history = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 2}'},
    ]
    final = api.chat.completions.create(model="securechat", messages=history, tools=TOOLS, max_tokens=12, seed=3)
    assert final.choices[0].message.content is not None or final.choices[0].message.tool_calls


def test_logprobs_and_n_through_the_sdk(config: ClientConfig) -> None:
    with SecureChatClient(config) as sdk:
        completion = sdk.complete(ASK, n=3, logprobs=True, top_logprobs=3, max_new_tokens=5, temperature=1.0, seed=4)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert all(len(choice.logprobs) == 5 for choice in completion.choices)
    assert completion.metrics["output_tokens"] == 15


def test_responses_and_completions_through_the_proxy(api: openai.OpenAI) -> None:
    response = api.responses.create(model="securechat", input="Say hi.", max_output_tokens=6, temperature=0)
    assert response.output_text and response.usage is not None and response.usage.output_tokens == 6
    called = api.responses.create(
        model="securechat",
        input=ASK,
        tools=[{"type": "function", "name": "get_weather", "parameters": PARAMETERS}],
        tool_choice="required",
        parallel_tool_calls=False,
    )
    call = next(item for item in called.output if item.type == "function_call")
    jsonschema.validate(json.loads(call.arguments), PARAMETERS)
    completion = api.completions.create(model="securechat", prompt="Once upon a time", max_tokens=5, logprobs=1)
    assert completion.choices[0].logprobs is not None and len(completion.choices[0].logprobs.tokens or []) == 5


def test_no_schema_tool_name_or_argument_reaches_the_host(ray_app: LocalApp, config: ClientConfig) -> None:
    canary = f"canary{uuid.uuid4().hex[:12]}"
    schema = {"type": "object", "properties": {canary: {"const": canary}}, "required": [canary]}
    tools = [{"type": "function", "function": {"name": f"fn_{canary}", "parameters": schema}}]
    recording = RecordingTransport()
    with SecureChatClient(config, http=httpx.Client(transport=recording, timeout=60)) as sdk:
        fmt = {"type": "json_schema", "json_schema": {"name": canary, "schema": schema}}
        structured = sdk.complete("x", response_format=fmt)
        called = sdk.complete("x", tools=tools, tool_choice="required", parallel_tool_calls=False)
    assert json.loads(structured.text) == {canary: canary}
    assert (
        called.choices[0].tool_calls[0].name == f"fn_{canary}" and canary in called.choices[0].tool_calls[0].arguments
    )
    assert canary.encode() not in recording.traffic
    hits = [str(p) for p in ray_app.session_dir.rglob("*") if p.is_file() and canary.encode() in p.read_bytes()]
    assert hits == []  # no log, metric or spill file of any Ray process holds it
