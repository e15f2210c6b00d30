"""The plaintext request body that travels only inside an envelope: chat messages, sampling settings, and what
the output must look like (choices, log probabilities, a response format, tools).

JSON; fields at their defaults are left out, so a plain chat body is what it always was::

    {"messages": [{"role", "content"[, "tool_calls": [{"id", "type": "function", "function": {"name",
                   "arguments"}}]][, "tool_call_id"]}, ...],
     "max_new_tokens", "temperature", "top_p", "seed"[, "stop"][, "presence_penalty", "frequency_penalty"]
     [, "n"][, "logprobs", "top_logprobs"][, "response_format"][, "tools", "tool_choice", "parallel_tool_calls"]
     [, "raw_prompt": true]}

``raw_prompt`` (a text completion) takes one user message whose content is the whole prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from securechat.engine.base import ChatMessage, GenerationRequest, SamplingParams, ToolCallRef
from securechat.structured.spec import Forced, InvalidOutputSpec, OutputSpec, parse_output_spec

ROLES = frozenset({"system", "user", "assistant", "tool"})
MAX_MESSAGES = 256
MAX_TOOL_CALLS_PER_MESSAGE = 64


class InvalidRequestBody(ValueError):
    """The decrypted body is not a valid request. ``param`` and the message name the field at fault (and, for a
    schema, the keyword): they travel only sealed, to the client, never into a log."""

    def __init__(self, message: str = "invalid request body", param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def detail(self) -> dict[str, Any]:
        """For the sealed trailer of the refusal."""
        return {"param": self.param, "message": str(self)}


@dataclass(frozen=True, slots=True)
class RequestBody:
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    output: OutputSpec = field(default_factory=OutputSpec)
    raw_prompt: bool = False

    @classmethod
    def from_prompt(cls, prompt: str, sampling: SamplingParams | None = None) -> RequestBody:
        return cls(messages=(ChatMessage("user", prompt),), sampling=sampling or SamplingParams())

    def to_bytes(self) -> bytes:
        s = self.sampling
        data: dict[str, Any] = {
            "messages": [_message_dict(m) for m in self.messages],
            "max_new_tokens": s.max_new_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "seed": s.seed,
        }
        if s.stop:
            data["stop"] = list(s.stop)
        if s.has_penalties:
            data.update(presence_penalty=s.presence_penalty, frequency_penalty=s.frequency_penalty)
        if self.n != 1:
            data["n"] = self.n
        if s.logprobs:
            data.update(logprobs=True, top_logprobs=s.top_logprobs)
        output = self.output
        if output.response_format.kind != "text":
            data["response_format"] = output.response_format.to_dict()
        if output.tools:
            data["tools"] = [tool.to_dict() for tool in output.tools]
            choice = output.tool_choice
            data["tool_choice"] = (
                {"type": "function", "function": {"name": choice.name}} if isinstance(choice, Forced) else choice
            )
            data["parallel_tool_calls"] = output.parallel_tool_calls
        if self.raw_prompt:
            data["raw_prompt"] = True
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
                logprobs=_flag(raw.get("logprobs", False)),
                top_logprobs=int(raw.get("top_logprobs") or 0),
            )
            n = int(raw.get("n", 1))
            raw_prompt = _flag(raw.get("raw_prompt", False))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidRequestBody() from exc
        try:
            output = parse_output_spec(
                raw.get("response_format"), raw.get("tools"), raw.get("tool_choice"), raw.get("parallel_tool_calls")
            )
        except InvalidOutputSpec as invalid:
            raise InvalidRequestBody(str(invalid), invalid.param) from None
        if not messages or len(messages) > MAX_MESSAGES:
            raise InvalidRequestBody()
        body = cls(messages=messages, sampling=sampling, n=n, output=output, raw_prompt=raw_prompt)
        try:
            body.to_generation_request("check")  # n, and a raw prompt's shape
        except ValueError as exc:
            raise InvalidRequestBody(str(exc)) from None
        return body

    def to_generation_request(
        self, request_id: str, delivery_interval_s: float = 0.0, grammar: str | None = None
    ) -> GenerationRequest:
        """``grammar``: the worker's ``securechat.structured.grammar.output_grammar(self.output)``."""
        return GenerationRequest(
            request_id=request_id,
            messages=self.messages,
            sampling=self.sampling,
            delivery_interval_s=delivery_interval_s,
            n=self.n,
            tools=self.output.prompt_tools(),
            grammar=grammar,
            raw_prompt=self.raw_prompt,
        )

    @property
    def extended(self) -> bool:
        """Whether the answer needs more than one choice's text: choices, log probabilities or tool calls."""
        return self.n > 1 or self.sampling.logprobs or self.output.calls_tools


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError("a flag is true or false")
    return value


def _message_dict(message: ChatMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    return data


def _parse_message(item: Any) -> ChatMessage:
    role, content = item["role"], item["content"]
    if role not in ROLES or not isinstance(content, str):
        raise ValueError("bad message")
    calls = item.get("tool_calls") or []
    if not isinstance(calls, list) or len(calls) > MAX_TOOL_CALLS_PER_MESSAGE or (calls and role != "assistant"):
        raise ValueError("bad tool calls")
    tool_call_id = item.get("tool_call_id")
    if (role == "tool") != isinstance(tool_call_id, str):
        raise ValueError("a tool message, and only one, names its call")
    return ChatMessage(role, content, tuple(_parse_call(call) for call in calls), tool_call_id)


def _parse_call(item: Any) -> ToolCallRef:
    if not isinstance(item, Mapping) or not isinstance(item.get("function"), Mapping):
        raise ValueError("bad tool call")
    function = item["function"]
    call_id, name, arguments = item.get("id"), function.get("name"), function.get("arguments")
    if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(arguments, str)):
        raise ValueError("bad tool call")
    return ToolCallRef(call_id, name, arguments)
