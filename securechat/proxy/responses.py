"""``POST /v1/responses``: OpenAI's Responses API, stateless: nothing is stored, so every request carries its
whole conversation (the host must keep none).

Honoured: ``model``, ``input`` (a string, or items: messages with text parts, ``function_call`` and
``function_call_output``), ``instructions``, ``tools`` (function tools), ``tool_choice``,
``parallel_tool_calls``, ``text.format`` (``text``, ``json_object``, ``json_schema``), ``max_output_tokens``,
``temperature``, ``top_p``, ``stream`` (the documented events: ``response.created``, ``.in_progress``,
``.output_item.added``/``.done``, ``.content_part.added``/``.done``, ``.output_text.delta``/``.done``,
``.function_call_arguments.delta``/``.done``, ``.completed``). Refused by name: ``store: true``,
``previous_response_id`` and ``conversation`` (they need the host to keep the conversation), built-in tools,
image and file inputs, ``reasoning``, ``background``, ``include``, and anything unknown. Accepted because
they cannot change the answer: ``user``, ``metadata``, ``service_tier``, ``safety_identifier``,
``prompt_cache_key``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, ClassVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from securechat.client import CompletionStream, SecureChatClient
from securechat.engine.base import MIN_TEMPERATURE, ChatMessage, ToolCallRef
from securechat.openapi_docs import json_body
from securechat.proxy.chat import SDK_ERRORS
from securechat.proxy.errors import from_exception
from securechat.proxy.openai_common import (
    DEFAULT_TEMPERATURE,
    MODEL_ID,
    CheckedRequest,
    UnsupportedParameter,
    check_model,
    error_responses,
    json_or_events,
    parse_request,
)
from securechat.request_body import MAX_MESSAGES
from securechat.response import Choice
from securechat.structured.spec import parse_output_spec
from securechat.structured.tool_calls import ToolCall

_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


class ResponseRequest(CheckedRequest):
    model_config = ConfigDict(extra="allow")
    neutral: ClassVar[dict[str, tuple[object, ...]]] = {
        "store": (None, False),  # the host keeps nothing: a stored response could not be read back anyway
        "previous_response_id": (None,),
        "conversation": (None,),
        "include": (None, []),
        "truncation": (None, "disabled"),
        "background": (None, False),
        "reasoning": (None,),
        "max_tool_calls": (None,),
        "top_logprobs": (None, 0),
    }

    model: str = MODEL_ID
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    stream: bool = False

    def check_supported(self) -> None:
        check_model(self.model)
        if self.temperature is not None and 0 < self.temperature < MIN_TEMPERATURE:
            raise UnsupportedParameter("temperature", f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}")
        messages = self.chat_messages()
        if len(messages) > MAX_MESSAGES:
            raise UnsupportedParameter("input", f"at most {MAX_MESSAGES} messages")
        if not any(m.role in ("user", "tool") for m in messages):
            raise UnsupportedParameter("input", "the input has no user message or function call output")
        sampling = self.sampling()
        parse_output_spec(sampling["response_format"], sampling["tools"], sampling["tool_choice"], None)
        super().check_supported()

    def chat_messages(self) -> list[ChatMessage]:
        messages = [ChatMessage("system", self.instructions)] if self.instructions else []
        items = [{"role": "user", "content": self.input}] if isinstance(self.input, str) else self.input
        for index, item in enumerate(items):
            message = _message(item, f"input.{index}")
            previous = messages[-1] if messages else None
            if message.tool_calls and previous is not None and previous.role == "assistant":
                # Consecutive calls (and the text before them) are one assistant turn.
                calls = previous.tool_calls + message.tool_calls
                messages[-1] = ChatMessage("assistant", previous.content, calls)
            else:
                messages.append(message)
        return messages

    def sampling(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_output_tokens,
            "temperature": DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "response_format": _response_format(self.text),
            "tools": [_chat_tool(tool, f"tools.{i}") for i, tool in enumerate(self.tools or [])] or None,
            "tool_choice": _chat_tool_choice(self.tool_choice),
            "parallel_tool_calls": True if self.parallel_tool_calls is None else self.parallel_tool_calls,
        }


def _message(item: dict[str, Any], where: str) -> ChatMessage:
    kind = item.get("type", "message")
    if kind == "message" and item.get("role") in _ROLES:
        return ChatMessage(_ROLES[item["role"]], _text(item.get("content"), f"{where}.content"))
    if kind == "function_call":
        call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
        if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
            raise UnsupportedParameter(where, "a function_call item has call_id, name and arguments")
        return ChatMessage("assistant", "", (ToolCallRef(call_id, name, arguments),))
    if kind == "function_call_output":
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str):
            raise UnsupportedParameter(f"{where}.call_id", "a function_call_output item names its call_id")
        return ChatMessage("tool", _text(output, f"{where}.output"), tool_call_id=call_id)
    raise UnsupportedParameter(f"{where}.type", f"input items of type {kind!r} are not supported")


def _text(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise UnsupportedParameter(where, "content is a string or a list of text parts")
    parts = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _TEXT_PARTS or not isinstance(part.get("text"), str):
            raise UnsupportedParameter(f"{where}.{index}.type", "only text parts are supported")
        parts.append(part["text"])
    return "".join(parts)


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if fmt is None or fmt == {"type": "text"}:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        raise UnsupportedParameter("text.format", "text.format is text, json_object or json_schema")
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {key: fmt[key] for key in ("name", "schema", "strict") if key in fmt}
    return {"type": "json_schema", "json_schema": schema}


def _chat_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise UnsupportedParameter(f"{where}.type", "only function tools are supported")
    function = {key: tool[key] for key in ("name", "description", "parameters") if tool.get(key) is not None}
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise UnsupportedParameter(
                "tool_choice", 'tool_choice is none, auto, required or {"type": "function", "name"}'
            )
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class ResponseBuilder:
    """The response object, as it grows while the answer streams."""

    def __init__(self, parsed: ResponseRequest, request_id: str) -> None:
        self.parsed = parsed
        self.id = f"resp_{request_id}"
        self.created_at = int(time.time())
        self.message_id = _item_id("msg")
        self.text = ""
        self.calls: list[tuple[str, ToolCall]] = []  # (item id, call)
        self.finish_reason: str | None = None
        self.metrics: dict[str, Any] = {}

    def message_item(self, status: str) -> dict[str, Any]:
        content = (
            [{"type": "output_text", "text": self.text, "annotations": [], "logprobs": []}]
            if status != "in_progress"
            else []
        )
        return {"type": "message", "id": self.message_id, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def call_item(item_id: str, call: ToolCall, status: str, arguments: str | None = None) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": item_id,
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments if arguments is None else arguments,
            "status": status,
        }

    def output(self) -> list[dict[str, Any]]:
        items = [self.message_item("completed")] if self.text or not self.calls else []
        return items + [self.call_item(item_id, call, "completed") for item_id, call in self.calls]

    def body(self, status: str) -> dict[str, Any]:
        parsed, sampling = self.parsed, self.parsed.sampling()
        incomplete = status == "completed" and self.finish_reason == "length"
        input_tokens = int(self.metrics.get("input_tokens", 0))
        output_tokens = int(self.metrics.get("output_tokens", 0))
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": "incomplete" if incomplete else status,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "error": None,
            "model": MODEL_ID,
            "instructions": parsed.instructions,
            "output": self.output() if status != "in_progress" else [],
            "parallel_tool_calls": sampling["parallel_tool_calls"],
            "tool_choice": parsed.tool_choice or ("auto" if parsed.tools else "none"),
            "tools": parsed.tools or [],
            "temperature": sampling["temperature"],
            "top_p": sampling["top_p"],
            "max_output_tokens": parsed.max_output_tokens,
            "previous_response_id": None,
            "store": False,
            "text": {"format": (parsed.text or {}).get("format") or {"type": "text"}},
            "truncation": "disabled",
            "metadata": {},
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            }
            if status != "in_progress"
            else None,
        }

    def take(self, choice: Choice, metrics: dict[str, Any]) -> None:
        self.text = choice.text
        self.calls = [(_item_id("fc"), call) for call in choice.tool_calls]
        self.finish_reason = choice.finish_reason
        self.metrics = metrics


def responses_router(client_of: Callable[[], SecureChatClient]) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/responses",
        response_model=None,
        responses={**json_or_events(), **error_responses()},
        openapi_extra=json_body(ResponseRequest),
    )
    async def responses(request: Request) -> Response:
        parsed = parse_request(await request.body(), request.headers.get("content-type", ""), ResponseRequest)
        try:
            client = await run_in_threadpool(client_of)
            opened = await run_in_threadpool(partial(client.open_stream, parsed.chat_messages(), **parsed.sampling()))
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        builder = ResponseBuilder(parsed, opened.request_id)
        if parsed.stream:
            headers = {"Cache-Control": "no-store", "X-Request-Id": opened.request_id}
            return StreamingResponse(_sse(opened, builder), media_type="text/event-stream", headers=headers)
        try:
            completion = await run_in_threadpool(opened.read)
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        finally:
            opened.close()
        builder.take(completion.choices[0], completion.metrics)
        return JSONResponse(builder.body("completed"), headers={"Cache-Control": "no-store"})

    return router


class _Events:
    """Numbered server-sent events, as the Responses API streams them."""

    def __init__(self) -> None:
        self.number = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.number, **fields}
        self.number += 1
        return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _sse(opened: CompletionStream, builder: ResponseBuilder) -> AsyncIterator[bytes]:
    event = _Events()
    yield event("response.created", response=builder.body("in_progress"))
    yield event("response.in_progress", response=builder.body("in_progress"))
    choice = Choice(0)
    message_open = False
    try:
        async for delta in iterate_in_threadpool(opened.deltas()):
            if delta.index != 0:
                continue
            if delta.text:
                if not message_open:
                    message_open = True
                    for chunk in _open_message(event, builder):
                        yield chunk
                yield event(
                    "response.output_text.delta",
                    item_id=builder.message_id,
                    output_index=0,
                    content_index=0,
                    delta=delta.text,
                    logprobs=[],
                )
            choice.add(delta)
            for call in delta.tool_calls:
                item_id = _item_id("fc")
                builder.calls.append((item_id, call))
                for chunk in _call_events(event, builder, item_id, call, int(message_open) + len(builder.calls) - 1):
                    yield chunk
    except SDK_ERRORS as exc:
        yield event("error", **from_exception(exc).body()["error"])
        return
    finally:
        opened.close()
    builder.text, builder.metrics = choice.text, opened.metrics or {}
    builder.finish_reason = choice.finish_reason or builder.metrics.get("finish_reason")
    if message_open or not builder.calls:
        if not message_open:
            for chunk in _open_message(event, builder):
                yield chunk
        part = {"type": "output_text", "text": builder.text, "annotations": [], "logprobs": []}
        ids = {"item_id": builder.message_id, "output_index": 0, "content_index": 0}
        yield event("response.output_text.done", text=builder.text, logprobs=[], **ids)
        yield event("response.content_part.done", part=part, **ids)
        yield event("response.output_item.done", output_index=0, item=builder.message_item("completed"))
    yield event("response.completed", response=builder.body("completed"))


def _open_message(event: _Events, builder: ResponseBuilder) -> Iterator[bytes]:
    yield event("response.output_item.added", output_index=0, item=builder.message_item("in_progress"))
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield event("response.content_part.added", item_id=builder.message_id, output_index=0, content_index=0, part=part)


def _call_events(event: _Events, builder: ResponseBuilder, item_id: str, call: ToolCall, index: int) -> Iterator[bytes]:
    yield event(
        "response.output_item.added", output_index=index, item=builder.call_item(item_id, call, "in_progress", "")
    )
    ids = {"item_id": item_id, "output_index": index}
    yield event("response.function_call_arguments.delta", delta=call.arguments, **ids)
    yield event("response.function_call_arguments.done", arguments=call.arguments, **ids)
    yield event("response.output_item.done", output_index=index, item=builder.call_item(item_id, call, "completed"))
