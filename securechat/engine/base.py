"""The engine contract: what a worker needs from a model runtime.

An engine turns one decrypted request into a stream of text chunks. It never sees keys or ciphertext, and it
must not log or raise with request content: exception messages name ids, counts and error kinds only.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolCallRef:
    """A tool call an assistant message made earlier in the conversation (OpenAI's ``tool_calls`` item)."""

    id: str = field(repr=False)
    name: str = field(repr=False)
    arguments: str = field(repr=False)  # JSON text


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str = field(repr=False)  # plaintext: never in a repr, a traceback's locals or a test report
    tool_calls: tuple[ToolCallRef, ...] = field(default=(), repr=False)  # assistant: the calls it made
    tool_call_id: str | None = field(default=None, repr=False)  # tool: the call this is the result of


MIN_TEMPERATURE = 0.01
MAX_STOP_STRINGS = 4
MAX_STOP_CHARS = 256
MAX_PENALTY = 2.0
MAX_TOP_LOGPROBS = 20
MAX_CHOICES = 8


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens. temperature == 0 means greedy; seed makes sampling reproducible.

    ``stop``: up to four strings; the answer ends before the first one appears in its text (which is not
    returned). ``presence_penalty`` / ``frequency_penalty`` (OpenAI's, in [-2, 2]): each token's logit is
    lowered by ``frequency_penalty * n + presence_penalty * (n > 0)``, n its count in the answer so far.
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = field(default=(), repr=False)  # may quote content: never in a repr
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: bool = False  # each token's log probability (after penalties and the grammar, before temperature)
    top_logprobs: int = 0  # and that many of the likeliest alternatives (needs logprobs)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        # NaN, infinities and vanishing temperatures turn the softmax into inf/NaN, which would fail the whole
        # batch a request shares, so they are refused here, before any engine sees them.
        if not math.isfinite(self.temperature) or not (self.temperature == 0 or self.temperature >= MIN_TEMPERATURE):
            raise ValueError(f"temperature must be 0 (greedy) or a finite number >= {MIN_TEMPERATURE}")
        if not (math.isfinite(self.top_p) and 0 < self.top_p <= 1):
            raise ValueError("top_p must be in (0, 1]")
        if len(self.stop) > MAX_STOP_STRINGS or not all(0 < len(s) <= MAX_STOP_CHARS for s in self.stop):
            raise ValueError(f"stop takes at most {MAX_STOP_STRINGS} non-empty strings of at most {MAX_STOP_CHARS}")
        for penalty in (self.presence_penalty, self.frequency_penalty):
            if not (math.isfinite(penalty) and -MAX_PENALTY <= penalty <= MAX_PENALTY):
                raise ValueError(f"penalties must be in [-{MAX_PENALTY}, {MAX_PENALTY}]")
        if not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS or (self.top_logprobs and not self.logprobs):
            raise ValueError(f"top_logprobs is 0 to {MAX_TOP_LOGPROBS}, and needs logprobs")

    @property
    def has_penalties(self) -> bool:
        return self.presence_penalty != 0 or self.frequency_penalty != 0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    request_id: str
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    #: How often the consumer reads after the first text: an engine may coalesce chunks up to this long
    #: (never the first text, never the end), which spares the event loop a wake-up per token.
    delivery_interval_s: float = 0.0
    n: int = 1  # choices, sampled from one prompt (seeded: choice i draws from seed + i)
    #: Tools for the chat template (OpenAI's shape), and the grammar that constrains every choice's tokens: an
    #: xgrammar structural tag (securechat.structured.spec), or None. Both tenant data.
    tools: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    grammar: str | None = field(default=None, repr=False)
    raw_prompt: bool = False  # the one message's content is the whole prompt: no chat template (completions)

    def __post_init__(self) -> None:
        if not 1 <= self.n <= MAX_CHOICES:
            raise ValueError(f"n is 1 to {MAX_CHOICES}")
        if self.raw_prompt and len(self.messages) != 1:
            raise ValueError("a raw prompt is one message")


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """Content-free numbers about one request, measured inside the engine."""

    ttft_ms: float
    total_ms: float
    input_tokens: int
    output_tokens: int  # every choice's together
    finish_reason: str = "stop"  # choice 0's: "length" (the token budget ended it), "stop" (EOS or a stop string)

    @property
    def tokens_per_sec(self) -> float:
        return self.output_tokens / (self.total_ms / 1000) if self.total_ms > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ttft_ms": round(self.ttft_ms, 3),
            "total_ms": round(self.total_ms, 3),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "tokens_per_sec": round(self.tokens_per_sec, 3),
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log probability, and its likeliest alternatives (raw token bytes, log probability)."""

    token: bytes = field(repr=False)
    logprob: float
    top: tuple[tuple[bytes, float], ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class TextChunk:
    """Newly decoded text of choice ``index``. A choice's last chunk has ``finish_reason`` set; the request's
    last chunk has ``stats`` set (its text may be empty)."""

    text: str = field(repr=False)
    num_tokens: int
    stats: GenerationStats | None = None
    index: int = 0
    logprobs: tuple[TokenLogprob, ...] = field(default=(), repr=False)  # of the tokens this chunk covers
    finish_reason: str | None = None


class EngineError(Exception):
    """A request failed but the engine is healthy (the worker goes back to READY).

    Messages must be content-free: a short reason code, never prompt or output text.
    """


class EngineDeadError(EngineError):
    """The engine cannot serve any more requests (the worker goes to FAILED and Serve replaces it)."""


class Engine(ABC):
    """A model runtime inside one worker replica.

    Lifecycle: construct (cheap, no I/O) -> ``await start()`` (loads weights) -> ``generate`` many times ->
    ``await close()``. ``generate`` must never block the event loop: model steps run off it.
    """

    #: How many requests may be inside ``generate`` at once; the worker queues the rest.
    max_concurrent_requests: int = 1

    @abstractmethod
    async def start(self) -> None:
        """Load tokenizer and weights. Raise EngineDeadError (content-free) on failure."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> AsyncIterator[TextChunk]:
        """Stream the completion of ``request``; the final chunk carries GenerationStats.

        Cancelling the consumer (closing the generator) must stop generation promptly and free its resources.
        """

    @abstractmethod
    def count_tokens(self, messages: tuple[ChatMessage, ...]) -> int:
        """Prompt tokens after the chat template, for admission limits."""

    #: Whether ``generate`` honours ``GenerationRequest.grammar`` (constrained decoding); engines that cannot
    #: must be asked for nothing constrained (the worker refuses such a request instead).
    supports_grammar: bool = False

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model. Default: nothing to do."""
