"""``POST /v1/chat/completions`` as the proxy speaks it: every parameter honoured or refused, none ignored.

Honoured: ``messages`` (system, developer, user, assistant with ``tool_calls``, tool with ``tool_call_id``),
``model`` (``securechat``), ``max_tokens``/``max_completion_tokens``, ``temperature`` (omitted: 1.0, OpenAI's
default), ``top_p``, ``seed``, ``n`` (up to 8), ``stop`` (up to four strings), ``presence_penalty``,
``frequency_penalty``, ``logprobs``, ``top_logprobs`` (up to 20), ``response_format`` (``text``,
``json_object``, ``json_schema``), ``tools``, ``tool_choice``, ``parallel_tool_calls``, ``stream``,
``stream_options``; and SecureChat's ``vector_store_ids``/``max_num_results`` (file search over a collection).
Accepted because they cannot change the answer: ``user``, ``metadata``, ``store`` (nothing is ever stored),
``service_tier``, ``safety_identifier``, ``prompt_cache_key``, and the neutral values ``modalities: ["text"]``
and ``logit_bias: {}``. Anything else (``logit_bias`` with values, audio, ``prediction``, ``web_search_options``,
vendor extras, unknown names) is refused with 400 naming it. The schema, the tools and their results are
tenant data: they are checked here, sealed, and constrain decoding inside the worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from securechat.client import ClientError, CompletionStream, InvalidCiphertext, ResponseFailed, SecureChatClient
from securechat.client.keyring import KeyringError
from securechat.deltas import Delta
from securechat.engine.base import (
    MAX_CHOICES,
    MAX_PENALTY,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    MAX_TOP_LOGPROBS,
    MIN_TEMPERATURE,
    ChatMessage,
    ToolCallRef,
)
from securechat.logs import get_logger, log_event
from securechat.openapi_docs import json_body
from securechat.proxy.errors import ProxyError, from_exception
from securechat.proxy.openai_common import (
    DEFAULT_TEMPERATURE,
    MODEL_ID,
    CheckedRequest,
    UnsupportedParameter,
    chat_logprobs,
    check_model,
    error_responses,
    json_or_events,
    parse_request,
    tool_call_dict,
    usage,
)
from securechat.request_body import MAX_MESSAGES
from securechat.response import Choice, Completion
from securechat.structured.spec import parse_output_spec

logger = get_logger("proxy")
SDK_ERRORS = (ClientError, InvalidCiphertext, ResponseFailed)
Citer = Callable[[list[dict[str, object]]], list[dict[str, object]] | None]


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCallItem(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


def _text(content: str | list[TextPart] | None) -> str:
    return "".join(part.text for part in content) if isinstance(content, list) else content or ""


class Message(BaseModel):
    """A system, developer, user or assistant message (an assistant's may carry the tool calls it made)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCallItem] | None = Field(default=None, max_length=64)

    def to_chat_message(self) -> ChatMessage:
        role = "system" if self.role == "developer" else self.role
        calls = tuple(ToolCallRef(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ())
        return ChatMessage(role, _text(self.content), calls)


class ToolMessage(BaseModel):
    """A tool's result, naming the call it answers."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["tool"]
    content: str | list[TextPart]
    tool_call_id: str

    def to_chat_message(self) -> ChatMessage:
        return ChatMessage("tool", _text(self.content), tool_call_id=self.tool_call_id)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(CheckedRequest):
    model_config = ConfigDict(extra="allow")
    neutral: ClassVar[dict[str, tuple[object, ...]]] = {
        "modalities": (None, ["text"]),
        "logit_bias": (None, {}),
        "store": (None, True, False),  # nothing is ever stored, whatever it says
    }

    model: str = MODEL_ID
    messages: list[Annotated[Message | ToolMessage, Field(discriminator="role")]] = Field(
        min_length=1, max_length=MAX_MESSAGES
    )
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)
    frequency_penalty: float | None = Field(default=None, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=64)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # SecureChat's file search (extra_body): answer from one vector store's nearest excerpts, with citations.
    vector_store_ids: list[str] | None = Field(default=None, min_length=1, max_length=1)
    max_num_results: int | None = Field(default=None, ge=1, le=20)

    def check_supported(self) -> None:
        check_model(self.model)
        if self.temperature is not None and 0 < self.temperature < MIN_TEMPERATURE:
            raise UnsupportedParameter("temperature", f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}")
        stops = self.stop_strings()
        if len(stops) > MAX_STOP_STRINGS or not all(0 < len(s) <= MAX_STOP_CHARS for s in stops):
            raise UnsupportedParameter("stop", f"stop takes up to {MAX_STOP_STRINGS} non-empty strings")
        if self.top_logprobs and not self.logprobs:
            raise UnsupportedParameter("top_logprobs", "top_logprobs needs logprobs: true")
        # The response format and tools, checked as the worker will (a schema keyword it cannot keep is named).
        parse_output_spec(self.response_format, self.tools, self.tool_choice, self.parallel_tool_calls)
        super().check_supported()

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def sampling(self) -> dict[str, Any]:
        """The SDK's keyword arguments for this request."""
        return {
            "max_new_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "seed": self.seed,
            "stop": self.stop_strings(),
            "presence_penalty": self.presence_penalty or 0.0,
            "frequency_penalty": self.frequency_penalty or 0.0,
            "n": self.n,
            "logprobs": bool(self.logprobs),
            "top_logprobs": self.top_logprobs or 0,
            "response_format": self.response_format,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": True if self.parallel_tool_calls is None else self.parallel_tool_calls,
        }

    def chat_messages(self) -> list[ChatMessage]:
        return [message.to_chat_message() for message in self.messages]

    def retrieval(self) -> dict[str, Any]:
        """The SDK's ``collection``/``top_k`` for a file-search chat (empty without vector stores)."""
        if not self.vector_store_ids:
            return {}
        return {"collection": self.vector_store_ids[0], "top_k": self.max_num_results}


def message_of(choice: Choice) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = [tool_call_dict(call) for call in choice.tool_calls]
        message["content"] = choice.text or None
    return message


def completion_object(
    completion: Completion, logprobs: bool, citations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body = {
        "id": f"chatcmpl-{completion.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {
                "index": choice.index,
                "message": message_of(choice),
                "logprobs": chat_logprobs(choice.logprobs if logprobs else None),
                "finish_reason": choice.finish_reason or "stop",
            }
            for choice in completion.choices
        ],
        "usage": usage(completion.metrics),
    }
    if citations is not None:
        # SecureChat's addition: [{n, file_id, filename, chunk_index, score, page, heading, text}]
        body["citations"] = citations
    return body


def chunk_object(
    request_id: str,
    created: int,
    choices: list[dict[str, Any]],
    usage_body: dict[str, int] | None = None,
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_ID,
        "choices": choices,
    }
    if usage_body is not None:
        chunk["usage"] = usage_body
    return chunk


def chunk_choice(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}


def chat_router(client_of: Callable[[], SecureChatClient]) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/chat/completions",
        response_model=None,
        responses={**json_or_events(), **error_responses()},
        openapi_extra=json_body(ChatCompletionRequest),
    )
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        parsed = parse_request(await request.body(), request.headers.get("content-type", ""), ChatCompletionRequest)
        try:
            client = await run_in_threadpool(client_of)
            open_stream = partial(client.open_stream, parsed.chat_messages(), **parsed.retrieval(), **parsed.sampling())
            opened = await run_in_threadpool(open_stream)
        except KeyringError as missing:
            return ProxyError(404, "invalid_request_error", "not_found", str(missing), "vector_store_ids").response()
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        cite = _citer(client, parsed.vector_store_ids)
        if parsed.stream:
            include_usage = parsed.stream_options is not None and parsed.stream_options.include_usage
            events = _sse(opened, parsed, include_usage, cite)
            headers = {"Cache-Control": "no-store", "X-Request-Id": opened.request_id}
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        try:
            completion = await run_in_threadpool(opened.read)
            citations = await run_in_threadpool(cite, completion.citations)
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        finally:
            opened.close()
        e2e_ms = round((time.perf_counter() - started) * 1000, 1)
        log_event(logger, "proxy_completion", request_id=completion.request_id, e2e_ms=e2e_ms)
        body = completion_object(completion, bool(parsed.logprobs), citations)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return router


def _citer(client: SecureChatClient, vector_store_ids: list[str] | None) -> Citer:
    """Citations in OpenAI's terms (file ids and names, opened locally), or None for a chat without files."""

    def cite(citations: list[dict[str, object]]) -> list[dict[str, object]] | None:
        if not vector_store_ids:
            return None
        names = {d.doc_id: d.filename for d in client.collections.documents(vector_store_ids[0])}
        return [
            {
                "n": c["n"],
                "file_id": c["doc_id"],
                "filename": names.get(str(c["doc_id"]), ""),
                "chunk_index": c["chunk_index"],
                "score": c["score"],
                "page": c.get("page"),
                "heading": c.get("heading"),
                "text": c.get("text"),
            }
            for c in citations
        ]

    return cite


async def _sse(
    opened: CompletionStream, parsed: ChatCompletionRequest, include_usage: bool, cite: Citer
) -> AsyncIterator[bytes]:
    """OpenAI's stream: a role chunk per choice, then each checked delta as it arrives (content, tool calls,
    log probabilities), each choice's finish chunk (with the citations of a file-search chat), [DONE]. A
    failure after the 200 went out becomes an ``error`` event (OpenAI clients raise on it) and the stream ends
    without [DONE]."""
    created = int(time.time())
    request_id = opened.request_id
    for index in range(parsed.n):
        yield _event(chunk_object(request_id, created, [chunk_choice(index, {"role": "assistant", "content": ""})]))
    calls_so_far = dict.fromkeys(range(parsed.n), 0)
    finished: set[int] = set()
    try:
        async for delta in iterate_in_threadpool(opened.deltas()):
            choice = _delta_choice(delta, calls_so_far, bool(parsed.logprobs))
            if choice is not None:
                yield _event(chunk_object(request_id, created, [choice]))
            if delta.finish_reason is not None:
                finished.add(delta.index)
    except SDK_ERRORS as exc:
        log_event(logger, "proxy_stream_failed", request_id=request_id, reason=type(exc).__name__)
        yield _event(from_exception(exc).body())
        return
    finally:
        opened.close()  # also when the caller hung up: closing the upstream cancels the generation
    metrics = opened.metrics or {}
    try:
        raw = opened.final.extra.get("citations") if opened.final is not None else None
        citations = await run_in_threadpool(cite, raw if isinstance(raw, list) else [])
    except SDK_ERRORS as exc:
        yield _event(from_exception(exc).body())
        return
    for index in range(parsed.n):
        if index in finished:
            continue  # its finish went with its last delta
        reason = metrics.get("finish_reason") if index == 0 else "stop"  # a plain answer's end is in the metrics
        final_chunk = chunk_object(
            request_id, created, [chunk_choice(index, {}, reason if reason in ("stop", "length") else "stop")]
        )
        if citations is not None:
            final_chunk["citations"] = citations
        yield _event(final_chunk)
    if include_usage:
        yield _event(chunk_object(request_id, created, [], usage_body=usage(metrics)))
    yield b"data: [DONE]\n\n"


def _delta_choice(delta: Delta, calls_so_far: dict[int, int], logprobs: bool) -> dict[str, Any] | None:
    """A chunk's choice for one delta, or None when it shows nothing."""
    body: dict[str, Any] = {}
    if delta.text:
        body["content"] = delta.text
    if delta.tool_calls:
        first = calls_so_far.get(delta.index, 0)
        body["tool_calls"] = [tool_call_dict(call, first + k) for k, call in enumerate(delta.tool_calls)]
        calls_so_far[delta.index] = first + len(delta.tool_calls)
    entries = chat_logprobs(delta.logprobs) if logprobs and delta.logprobs else None
    if not body and entries is None and delta.finish_reason is None:
        return None
    return chunk_choice(delta.index, body, delta.finish_reason, entries)


def _event(data: dict[str, object]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
