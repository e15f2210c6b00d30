"""``POST /v1/completions``: OpenAI's legacy text completion, the prompt as it is (no chat template).

Honoured: ``model``, ``prompt`` (a string, or a list of one), ``max_tokens`` (omitted: 16, OpenAI's default),
``temperature`` (omitted: 1.0), ``top_p``, ``n`` (up to 8), ``stop``, ``presence_penalty``,
``frequency_penalty``, ``seed``, ``logprobs`` (0 to 5 alternatives per token), ``stream``, ``stream_options``.
Accepted at their neutral values only: ``echo: false``, ``suffix: null``, ``best_of`` equal to ``n``,
``logit_bias: {}``. Everything else is refused by name.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, ClassVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ConfigDict, Field
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from securechat.client import SecureChatClient
from securechat.engine.base import (
    MAX_CHOICES,
    MAX_PENALTY,
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    MIN_TEMPERATURE,
    TokenLogprob,
)
from securechat.openapi_docs import json_body
from securechat.proxy.chat import SDK_ERRORS, StreamOptions
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
    token_text,
    usage,
)
from securechat.response import Choice

DEFAULT_MAX_TOKENS = 16  # OpenAI's documented default for the legacy endpoint
MAX_LEGACY_LOGPROBS = 5


class CompletionRequest(CheckedRequest):
    model_config = ConfigDict(extra="allow")
    neutral: ClassVar[dict[str, tuple[object, ...]]] = {
        "echo": (None, False),
        "suffix": (None,),
        "logit_bias": (None, {}),
    }

    model: str = MODEL_ID
    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    best_of: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)
    frequency_penalty: float | None = Field(default=None, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LEGACY_LOGPROBS)
    stream: bool = False
    stream_options: StreamOptions | None = None

    def check_supported(self) -> None:
        check_model(self.model)
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise UnsupportedParameter("prompt", "one prompt per request (a string, or a list of one string)")
        if not self.text:
            raise UnsupportedParameter("prompt", "the prompt is empty")
        if self.best_of is not None and self.best_of != self.n:
            raise UnsupportedParameter("best_of", "best_of other than n is not supported")
        if self.temperature is not None and 0 < self.temperature < MIN_TEMPERATURE:
            raise UnsupportedParameter("temperature", f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}")
        stops = self.stop_strings()
        if len(stops) > MAX_STOP_STRINGS or not all(0 < len(s) <= MAX_STOP_CHARS for s in stops):
            raise UnsupportedParameter("stop", f"stop takes up to {MAX_STOP_STRINGS} non-empty strings")
        super().check_supported()

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def sampling(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_tokens or DEFAULT_MAX_TOKENS,
            "temperature": DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "seed": self.seed,
            "stop": self.stop_strings(),
            "presence_penalty": self.presence_penalty or 0.0,
            "frequency_penalty": self.frequency_penalty or 0.0,
            "n": self.n,
            "logprobs": self.logprobs is not None,
            "top_logprobs": self.logprobs or 0,
            "raw_prompt": True,
        }


def legacy_logprobs(entries: list[TokenLogprob]) -> dict[str, Any]:
    """The legacy shape: parallel lists of tokens, their log probabilities, alternatives and text offsets."""
    offsets, offset = [], 0
    for entry in entries:
        offsets.append(offset)
        offset += len(token_text(entry.token))
    return {
        "tokens": [token_text(entry.token) for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [{token_text(t): v for t, v in entry.top} for entry in entries],
        "text_offset": offsets,
    }


def choice_object(choice: Choice, logprobs: bool) -> dict[str, Any]:
    return {
        "text": choice.text,
        "index": choice.index,
        "logprobs": legacy_logprobs(choice.logprobs) if logprobs else None,
        "finish_reason": choice.finish_reason or "stop",
    }


def completions_router(client_of: Callable[[], SecureChatClient]) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/completions",
        response_model=None,
        responses={**json_or_events(), **error_responses()},
        openapi_extra=json_body(CompletionRequest),
    )
    async def completions(request: Request) -> Response:
        parsed = parse_request(await request.body(), request.headers.get("content-type", ""), CompletionRequest)
        try:
            client = await run_in_threadpool(client_of)
            opened = await run_in_threadpool(partial(client.open_stream, parsed.text, **parsed.sampling()))
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        created = int(time.time())
        if parsed.stream:
            include_usage = parsed.stream_options is not None and parsed.stream_options.include_usage
            headers = {"Cache-Control": "no-store", "X-Request-Id": opened.request_id}
            events = _sse(opened, parsed, created, include_usage)
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        try:
            completion = await run_in_threadpool(opened.read)
        except SDK_ERRORS as exc:
            return from_exception(exc).response()
        finally:
            opened.close()
        body = _object(
            completion.request_id, created, [choice_object(c, parsed.logprobs is not None) for c in completion.choices]
        )
        body["usage"] = usage(completion.metrics)
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    return router


def _object(request_id: str, created: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": f"cmpl-{request_id}",
        "object": "text_completion",
        "created": created,
        "model": MODEL_ID,
        "choices": choices,
    }


async def _sse(opened: Any, parsed: CompletionRequest, created: int, include_usage: bool) -> AsyncIterator[bytes]:
    finished: set[int] = set()
    try:
        async for delta in iterate_in_threadpool(opened.deltas()):
            if not delta.text and not delta.logprobs and delta.finish_reason is None:
                continue
            choice = Choice(delta.index, delta.text, [], list(delta.logprobs), delta.finish_reason)
            data = choice_object(choice, parsed.logprobs is not None)
            data["finish_reason"] = delta.finish_reason
            if delta.finish_reason is not None:
                finished.add(delta.index)
            yield _event(_object(opened.request_id, created, [data]))
    except SDK_ERRORS as exc:
        yield _event(from_exception(exc).body())
        return
    finally:
        opened.close()
    metrics = opened.metrics or {}
    for index in range(parsed.n):
        if index not in finished:
            reason = metrics.get("finish_reason") if index == 0 else "stop"
            end = {
                "text": "",
                "index": index,
                "logprobs": None,
                "finish_reason": reason if reason in ("stop", "length") else "stop",
            }
            yield _event(_object(opened.request_id, created, [end]))
    if include_usage:
        final = _object(opened.request_id, created, [])
        final["usage"] = usage(metrics)
        yield _event(final)
    yield b"data: [DONE]\n\n"


def _event(data: dict[str, object]) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
