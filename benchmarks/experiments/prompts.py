"""Prompts that tokenize to a target length with the model's own tokenizer (chat template included).

The prototype reports ``input_tokens`` as the worker counts them, so targets here are counted the same way:
``apply_chat_template(..., add_generation_prompt=True)``, exactly as both engines do. The user text is a prefix
of a fixed, seeded filler text; a binary search over its length in characters finds the prefix whose count
equals the target (byte-level BPE moves in steps of one token, so the hit is exact unless the template alone
is longer than the target, in which case the shortest prompt is used and its real length is recorded).
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any, Final

from benchmarks.experiments.common import SEED
from securechat.engine.base import ChatMessage
from securechat.tiny_model import resolve_model_path

_TEXT: Final = (
    "transformer attention cache latency throughput token decode prefill batch kernel memory bandwidth "
    "model layer weight head query key value softmax matrix vector GPU CPU stream frame request worker "
    "gateway orchestrator enclave encryption privacy tenant region scheduler queue replica serve engine "
    "explain describe compare measure why how what when which the a of to and in for with on by"
)
_WORDS: Final = tuple(_TEXT.split(" "))
SHORT_PROMPT: Final = "Explain how KV caching speeds up decoding."  # the multi_worker prompt (~6 words, as there)


@lru_cache(maxsize=4)
def load_tokenizer(model: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(model))


def filler_text(num_chars: int = 12_000) -> str:
    rng = random.Random(SEED)
    words: list[str] = []
    length = 0
    while length < num_chars:
        sentence = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 14)))
        words.append(sentence.capitalize() + ".")
        length += len(words[-1]) + 1
    return " ".join(words)


def count_tokens(tokenizer: Any, messages: tuple[ChatMessage, ...]) -> int:
    conversation = [{"role": m.role, "content": m.content} for m in messages]
    ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True, return_dict=False)
    return len(ids)


def _messages(text: str) -> tuple[ChatMessage, ...]:
    # An empty system message replaces the template's default one (~25 tokens on the tiny model's small vocab),
    # so even the prototype's 21-token "short" prompt is reachable.
    return (ChatMessage("system", ""), ChatMessage("user", text))


def prompt_of_length(model: str, target_tokens: int) -> tuple[tuple[ChatMessage, ...], int]:
    """Messages whose chat-templated length is ``target_tokens`` (or as close as possible), and that length."""
    tokenizer = load_tokenizer(model)
    text = filler_text()
    low, high = 1, len(text)  # smallest prefix with count >= target
    while low < high:
        mid = (low + high) // 2
        if count_tokens(tokenizer, _messages(text[:mid].strip() or text[0])) >= target_tokens:
            high = mid
        else:
            low = mid + 1
    messages = _messages(text[:low].strip() or text[0])
    return messages, count_tokens(tokenizer, messages)
