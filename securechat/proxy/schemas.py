"""The subset of OpenAI's chat completions API the proxy speaks: request model and response builders.

Fields OpenAI clients send that change nothing here (``user``, ``metadata``, ...) are accepted and ignored;
fields that would change the answer in ways SecureChat cannot honour (``n`` > 1, tools, logprobs) are refused.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from securechat.engine.base import ChatMessage
from securechat.request_body import MAX_MESSAGES

MODEL_ID = "securechat"
_UNSUPPORTED = ("tools", "functions", "tool_choice", "logprobs", "top_logprobs", "response_format", "audio")


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def to_chat_message(self) -> ChatMessage:
        role = "system" if self.role == "developer" else self.role
        if isinstance(self.content, list):
            return ChatMessage(role, "".join(part.text for part in self.content))
        return ChatMessage(role, self.content or "")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # SecureChat's file search (extra_body): answer from one vector store's nearest excerpts, with citations.
    vector_store_ids: list[str] | None = Field(default=None, min_length=1, max_length=1)
    max_num_results: int | None = Field(default=None, ge=1, le=20)

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ChatCompletionRequest:
        extra = self.model_extra or {}
        for name in _UNSUPPORTED:
            if extra.get(name) not in (None, False, [], {"type": "text"}):
                raise ValueError(f"{name} is not supported by the SecureChat proxy")
        return self

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def sampling(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": 0.0 if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "seed": self.seed,
        }

    def chat_messages(self) -> list[ChatMessage]:
        return [message.to_chat_message() for message in self.messages]

    def retrieval(self) -> dict[str, Any]:
        """The SDK's ``collection``/``top_k`` for a file-search chat (empty without vector stores)."""
        if not self.vector_store_ids:
            return {}
        return {"collection": self.vector_store_ids[0], "top_k": self.max_num_results}


def usage(metrics: dict[str, Any]) -> dict[str, int]:
    prompt_tokens = int(metrics.get("input_tokens", 0))
    completion_tokens = int(metrics.get("output_tokens", 0))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def finish_reason(metrics: dict[str, Any], max_new_tokens: int | None) -> str:
    """``length`` when the answer used the whole token budget the caller asked for, else ``stop``."""
    if max_new_tokens is not None and int(metrics.get("output_tokens", 0)) >= max_new_tokens:
        return "length"
    return "stop"


def completion_object(
    request_id: str,
    text: str,
    metrics: dict[str, Any],
    max_new_tokens: int | None,
    citations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL_ID,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason(metrics, max_new_tokens),
            }
        ],
        "usage": usage(metrics),
    }
    if citations is not None:
        body["citations"] = citations  # SecureChat's addition: [{n, file_id, filename, chunk_index, score}]
    return body


def chunk_object(
    request_id: str,
    created: int,
    delta: dict[str, str],
    finish: str | None = None,
    usage_body: dict[str, int] | None = None,
) -> dict[str, Any]:
    choices = (
        [] if usage_body is not None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
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


def models_list() -> dict[str, Any]:
    return {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "securechat"}]}
