"""Turning what a caller passes (a prompt, or chat messages) into the request body that goes inside an envelope.

Messages are ChatMessages or OpenAI's chat shapes: ``{"role", "content"}``, an assistant's ``tool_calls``
(``[{"id", "type": "function", "function": {"name", "arguments"}}]``, content may be None), a tool result's
``tool_call_id``. Everything is checked here, before anything is sealed: a schema or tool the worker could
not honour raises ``InvalidOutputSpec`` (a ValueError naming the field) without a round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, Unpack

from securechat.engine.base import ChatMessage, SamplingParams, ToolCallRef
from securechat.request_body import MAX_MESSAGES, ROLES, RequestBody
from securechat.structured.spec import parse_output_spec

MAX_NEW_TOKENS = 32768  # asked for when the caller gives no limit: every worker caps it at its own limit

Prompt = str | Sequence[ChatMessage | Mapping[str, Any]]


class Sampling(TypedDict, total=False):
    """Keyword arguments of every request method; all optional."""

    max_new_tokens: int | None  # None: the worker's limit
    temperature: float  # 0 (default) is greedy
    top_p: float
    seed: int | None  # choice i of n draws from seed + i
    stop: Sequence[str]  # up to four strings; the answer ends before the first one (not returned)
    presence_penalty: float  # OpenAI's penalties, in [-2, 2]
    frequency_penalty: float
    n: int  # choices, 1 to 8, sampled from one prefill
    logprobs: bool  # each token's log probability
    top_logprobs: int  # and up to 20 alternatives (needs logprobs)
    response_format: Mapping[str, Any] | None  # OpenAI's: {"type": "json_object"} or a json_schema
    tools: Sequence[Mapping[str, Any]] | None  # OpenAI's function tools
    tool_choice: str | Mapping[str, Any] | None  # "none", "auto", "required" or {"type": "function", ...}
    parallel_tool_calls: bool
    raw_prompt: bool  # a text completion: the prompt string as it is, no chat template


def to_messages(prompt: Prompt) -> tuple[ChatMessage, ...]:
    """A string is one user message; otherwise each item is a ChatMessage or an OpenAI chat message."""
    if isinstance(prompt, str):
        return (ChatMessage("user", prompt),)
    messages = tuple(item if isinstance(item, ChatMessage) else _from_mapping(item) for item in prompt)
    if not 0 < len(messages) <= MAX_MESSAGES:
        raise ValueError(f"give between 1 and {MAX_MESSAGES} messages")
    for message in messages:
        if message.role not in ROLES or not isinstance(message.content, str):
            raise ValueError(f"message roles are {sorted(ROLES)} and contents are strings")
        if (message.role == "tool") != (message.tool_call_id is not None):
            raise ValueError("a tool message, and only one, has a tool_call_id")
    return messages


def build_body(prompt: Prompt, **sampling: Unpack[Sampling]) -> bytes:
    """The plaintext request body; bad sampling values raise ValueError here, before anything is sealed."""
    return build_request(prompt, **sampling).to_bytes()


def build_request(prompt: Prompt, **sampling: Unpack[Sampling]) -> RequestBody:
    """As ``build_body``, before encoding (a RAG body wraps it)."""
    max_new_tokens = sampling.get("max_new_tokens")
    params = SamplingParams(
        max_new_tokens=MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens,
        temperature=sampling.get("temperature", 0.0),
        top_p=sampling.get("top_p", 1.0),
        seed=sampling.get("seed"),
        stop=tuple(sampling.get("stop") or ()),
        presence_penalty=sampling.get("presence_penalty", 0.0),
        frequency_penalty=sampling.get("frequency_penalty", 0.0),
        logprobs=sampling.get("logprobs", False),
        top_logprobs=sampling.get("top_logprobs", 0),
    )
    output = parse_output_spec(
        sampling.get("response_format"),
        sampling.get("tools"),
        sampling.get("tool_choice"),
        sampling.get("parallel_tool_calls"),
    )
    body = RequestBody(
        to_messages(prompt), params, sampling.get("n", 1), output, raw_prompt=sampling.get("raw_prompt", False)
    )
    body.to_generation_request("check")  # n and a raw prompt's shape: ValueError now, not a sealed refusal later
    return body


def _from_mapping(item: Mapping[str, Any]) -> ChatMessage:
    try:
        role, content = item["role"], item.get("content")
    except (KeyError, TypeError, AttributeError):
        raise ValueError("each message needs a role and a content") from None
    calls = item.get("tool_calls") or ()
    if content is None and not calls:
        raise ValueError("each message needs a role and a content")
    return ChatMessage(role, content or "", tuple(_call(call) for call in calls), item.get("tool_call_id"))


def _call(item: Any) -> ToolCallRef:
    """An OpenAI tool call ({"id", "type": "function", "function": {"name", "arguments"}}), or one of ours."""
    if isinstance(item, ToolCallRef):
        return item
    if hasattr(item, "id") and hasattr(item, "name") and hasattr(item, "arguments"):  # a tool call we returned
        return ToolCallRef(item.id, item.name, item.arguments)
    try:
        function = item["function"]
        return ToolCallRef(str(item["id"]), str(function["name"]), str(function["arguments"]))
    except (KeyError, TypeError):
        raise ValueError('each tool call is {"id", "type": "function", "function": {"name", "arguments"}}') from None
