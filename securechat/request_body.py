"""The plaintext request body that travels only inside an envelope: chat messages and sampling settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from securechat.engine.base import ChatMessage, GenerationRequest, SamplingParams

ROLES = frozenset({"system", "user", "assistant"})
MAX_MESSAGES = 256


class InvalidRequestBody(ValueError):
    """The decrypted body is not a valid request (content-free message)."""


@dataclass(frozen=True, slots=True)
class RequestBody:
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)

    @classmethod
    def from_prompt(cls, prompt: str, sampling: SamplingParams | None = None) -> RequestBody:
        return cls(messages=(ChatMessage("user", prompt),), sampling=sampling or SamplingParams())

    def to_bytes(self) -> bytes:
        s = self.sampling
        data = {
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }
        if s.stop:
            data["stop"] = list(s.stop)
        if s.has_penalties:
            data.update(presence_penalty=s.presence_penalty, frequency_penalty=s.frequency_penalty)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, max_new_tokens_limit: int) -> RequestBody:
        """Parse and validate; ``max_new_tokens`` defaults to and is capped by the worker's limit."""
        try:
            raw: dict[str, Any] = json.loads(data)
            messages = tuple(_parse_message(m) for m in raw["messages"])
            max_new_tokens = raw.get("max_new_tokens") or max_new_tokens_limit
            stop = raw.get("stop") or []
            if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
                raise ValueError("stop is a list of strings")
            sampling = SamplingParams(
                max_new_tokens=min(int(max_new_tokens), max_new_tokens_limit),
                temperature=float(raw.get("temperature", 0.0)),
                top_p=float(raw.get("top_p", 1.0)),
                seed=None if raw.get("seed") is None else int(raw["seed"]),
                stop=tuple(stop),
                presence_penalty=float(raw.get("presence_penalty", 0.0)),
                frequency_penalty=float(raw.get("frequency_penalty", 0.0)),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidRequestBody("invalid request body") from exc
        if not messages or len(messages) > MAX_MESSAGES:
            raise InvalidRequestBody("invalid request body")
        return cls(messages=messages, sampling=sampling)

    def to_generation_request(self, request_id: str, delivery_interval_s: float = 0.0) -> GenerationRequest:
        return GenerationRequest(
            request_id=request_id,
            messages=self.messages,
            sampling=self.sampling,
            delivery_interval_s=delivery_interval_s,
        )


def _parse_message(item: Any) -> ChatMessage:
    role, content = item["role"], item["content"]
    if role not in ROLES or not isinstance(content, str):
        raise ValueError("bad message")
    return ChatMessage(role=role, content=content)
