"""OpenAI's chat completions API as the proxy speaks it: every parameter honoured or refused, none ignored.

Honoured: ``messages``, ``model`` (``securechat``), ``max_tokens``/``max_completion_tokens``, ``temperature``
(omitted: 1.0, OpenAI's documented default), ``top_p``, ``seed``, ``n`` (1), ``stop`` (up to four strings,
matched in the worker), ``presence_penalty``, ``frequency_penalty``, ``stream``, ``stream_options``; and
SecureChat's ``vector_store_ids``/``max_num_results`` (file search over a collection). Accepted because they
cannot change the answer: ``user``, ``metadata``, ``store``, ``service_tier``, ``safety_identifier``,
``prompt_cache_key``, and the neutral values ``logprobs: false``, ``response_format: {"type": "text"}``,
``modalities: ["text"]``, ``tool_choice: "none"``, ``parallel_tool_calls``. Anything else (``logit_bias``,
``top_logprobs``, tools, JSON modes, audio, vendor extras, unknown names) is refused with 400 naming it.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from securechat.engine.base import MAX_PENALTY, MAX_STOP_CHARS, MAX_STOP_STRINGS, MIN_TEMPERATURE, ChatMessage
from securechat.request_body import MAX_MESSAGES

MODEL_ID = "securechat"
DEFAULT_TEMPERATURE = 1.0  # OpenAI's documented default for an omitted temperature
# Parameters that cannot change the answer, so accepting them hides nothing.
_NO_EFFECT = frozenset({"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"})
# Parameters accepted only at the value that asks for nothing.
_NEUTRAL: dict[str, tuple[object, ...]] = {
    "logprobs": (None, False),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None, True, False),
    "logit_bias": (None, {}),
}


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


class UnsupportedParameter(ValueError):
    """A parameter the proxy will not pretend to honour; ``param`` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(default=None, ge=1, le=32768)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=32768)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    n: int = Field(default=1, ge=1, le=1)
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)
    frequency_penalty: float | None = Field(default=None, ge=-MAX_PENALTY, le=MAX_PENALTY, allow_inf_nan=False)
    stream: bool = False
    stream_options: StreamOptions | None = None
    # SecureChat's file search (extra_body): answer from one vector store's nearest excerpts, with citations.
    vector_store_ids: list[str] | None = Field(default=None, min_length=1, max_length=1)
    max_num_results: int | None = Field(default=None, ge=1, le=20)

    def check_supported(self) -> None:
        """Raise UnsupportedParameter for the first parameter that would be silently dropped."""
        if self.model != MODEL_ID:
            raise UnsupportedParameter("model", f"the model is {MODEL_ID!r}")
        if self.temperature is not None and 0 < self.temperature < MIN_TEMPERATURE:
            raise UnsupportedParameter("temperature", f"temperature must be 0 (greedy) or >= {MIN_TEMPERATURE}")
        stops = self.stop_strings()
        if len(stops) > MAX_STOP_STRINGS or not all(0 < len(s) <= MAX_STOP_CHARS for s in stops):
            raise UnsupportedParameter("stop", f"stop takes up to {MAX_STOP_STRINGS} non-empty strings")
        for name, value in (self.model_extra or {}).items():
            if name in _NO_EFFECT or (name in _NEUTRAL and value in _NEUTRAL[name]):
                continue
            raise UnsupportedParameter(name, f"{name} is not supported by the SecureChat proxy")

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def sampling(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": DEFAULT_TEMPERATURE if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "seed": self.seed,
            "stop": self.stop_strings(),
            "presence_penalty": self.presence_penalty or 0.0,
            "frequency_penalty": self.frequency_penalty or 0.0,
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


def finish_reason(metrics: dict[str, Any]) -> str:
    """The worker's own verdict, sealed in the final frame: ``length`` when a token budget (the caller's, the
    tenant's or the worker's) ended the answer, ``stop`` for EOS or a stop string."""
    reason = metrics.get("finish_reason")
    return reason if reason in ("stop", "length") else "stop"


def completion_object(
    request_id: str,
    text: str,
    metrics: dict[str, Any],
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
                "finish_reason": finish_reason(metrics),
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
