"""Turning chat messages into prompt token ids: one rule for every engine, so the same request means the same
prompt whichever engine serves it.

Tools and tool calls go to the tokenizer's own chat template, in the shape Hugging Face templates expect (the
one Qwen2.5's and the tiny model's render): tools as OpenAI's ``{"type": "function", "function": {...}}``, an
assistant's earlier calls with their arguments as objects, a tool's result with its call id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from securechat.engine.base import ChatMessage


def chat_prompt_ids(
    tokenizer: Any, messages: tuple[ChatMessage, ...], tools: Sequence[Mapping[str, Any]] = (), *, raw: bool = False
) -> list[int]:
    """The tokenizer's chat template with the generation prompt appended (transformers 5 tokenizers); with
    ``raw``, the one message's text as it is (a text completion)."""
    if raw:
        return list(tokenizer.encode(messages[0].content, add_special_tokens=False))
    conversation = [_message(m) for m in messages]
    ids = tokenizer.apply_chat_template(
        conversation,
        tools=[dict(tool) for tool in tools] or None,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    return list(ids)


def _message(message: ChatMessage) -> dict[str, Any]:
    rendered: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        rendered["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": _arguments(call.arguments)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        rendered["tool_call_id"] = message.tool_call_id
    return rendered


def _arguments(text: str) -> Any:
    """Templates render arguments with ``tojson``: an object, not the JSON text OpenAI's API carries."""
    try:
        return json.loads(text)
    except ValueError:
        return text
