"""Turning what a caller passes (a prompt, or chat messages) into the request body that goes inside an envelope."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict, Unpack

from securechat.engine.base import ChatMessage, SamplingParams
from securechat.request_body import MAX_MESSAGES, ROLES, RequestBody

MAX_NEW_TOKENS = 32768  # asked for when the caller gives no limit: every worker caps it at its own limit

Prompt = str | Sequence[ChatMessage | Mapping[str, str]]


class Sampling(TypedDict, total=False):
    """Keyword arguments of every request method; all optional."""

    max_new_tokens: int | None  # None: the worker's limit
    temperature: float  # 0 (default) is greedy
    top_p: float
    seed: int | None
    stop: Sequence[str]  # up to four strings; the answer ends before the first one (not returned)
    presence_penalty: float  # OpenAI's penalties, in [-2, 2]
    frequency_penalty: float


def to_messages(prompt: Prompt) -> tuple[ChatMessage, ...]:
    """A string is one user message; otherwise each item is a ChatMessage or a {"role", "content"} mapping."""
    if isinstance(prompt, str):
        return (ChatMessage("user", prompt),)
    messages = tuple(item if isinstance(item, ChatMessage) else _from_mapping(item) for item in prompt)
    if not 0 < len(messages) <= MAX_MESSAGES:
        raise ValueError(f"give between 1 and {MAX_MESSAGES} messages")
    for message in messages:
        if message.role not in ROLES or not isinstance(message.content, str):
            raise ValueError(f"message roles are {sorted(ROLES)} and contents are strings")
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
    )
    return RequestBody(messages=to_messages(prompt), sampling=params)


def _from_mapping(item: Mapping[str, str]) -> ChatMessage:
    try:
        return ChatMessage(role=item["role"], content=item["content"])
    except (KeyError, TypeError):
        raise ValueError("each message needs a role and a content") from None
