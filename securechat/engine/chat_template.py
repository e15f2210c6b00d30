"""Turning chat messages into prompt token ids: one rule for every engine, so the same request means the same
prompt whichever engine serves it."""

from __future__ import annotations

from typing import Any

from securechat.engine.base import ChatMessage


def chat_prompt_ids(tokenizer: Any, messages: tuple[ChatMessage, ...]) -> list[int]:
    """The tokenizer's chat template with the generation prompt appended (transformers 5 tokenizers)."""
    conversation = [{"role": m.role, "content": m.content} for m in messages]
    ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=False)
    return list(ids)
