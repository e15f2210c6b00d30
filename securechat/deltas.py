"""What an extended answer streams, choice by choice: text, log probabilities, tool calls, and each choice's end.

An answer is *extended* when it needs more than one choice's text: n > 1, log probabilities, or tools. Its
deltas travel sealed as newline-delimited JSON in EVENTS records (``securechat.stream``)::

    {"i": choice, "text": str, "lp": [[token bytes b64, logprob, [[b64, logprob], ...]], ...],
     "calls": [{"id", "name", "arguments"}, ...], "end": "stop" | "length" | "tool_calls"}

(fields at their defaults are left out). A plain answer keeps TEXT records: one choice's text, nothing else.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from securechat.engine.base import MAX_CHOICES, TextChunk, TokenLogprob
from securechat.structured.tool_calls import ToolCall, ToolCallParser

FINISH_REASONS: Final = frozenset({"stop", "length", "tool_calls"})


@dataclass(frozen=True, slots=True)
class Delta:
    index: int = 0
    text: str = field(default="", repr=False)
    logprobs: tuple[TokenLogprob, ...] = field(default=(), repr=False)
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"i": self.index}
        if self.text:
            data["text"] = self.text
        if self.logprobs:
            data["lp"] = [[_b64(t.token), t.logprob, [[_b64(b), v] for b, v in t.top]] for t in self.logprobs]
        if self.tool_calls:
            data["calls"] = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.tool_calls]
        if self.finish_reason is not None:
            data["end"] = self.finish_reason
        return data

    @classmethod
    def from_json(cls, data: object) -> Delta:
        """ValueError for anything that is not a delta a worker writes."""
        if not isinstance(data, Mapping) or not set(data) <= {"i", "text", "lp", "calls", "end"}:
            raise ValueError("not a delta")
        index, text, end = data.get("i"), data.get("text", ""), data.get("end")
        if not isinstance(index, int) or not 0 <= index < MAX_CHOICES or not isinstance(text, str):
            raise ValueError("not a delta")
        if end is not None and end not in FINISH_REASONS:
            raise ValueError("not a finish reason")
        logprobs = tuple(_logprob(item) for item in _list(data.get("lp", [])))
        calls = tuple(_call(item) for item in _list(data.get("calls", [])))
        return cls(index, text, logprobs, calls, end)


def encode_deltas(deltas: Iterable[Delta]) -> bytes:
    """Newline-delimited JSON (JSON never holds a raw newline, so lines split cleanly)."""
    return b"".join(json.dumps(d.to_json(), ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for d in deltas)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("not a list")
    return value


def _number(value: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value > 0:
        raise ValueError("not a log probability")
    return float(value)


def _bytes(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError("not base64")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError("not base64") from None


def _logprob(item: object) -> TokenLogprob:
    token, logprob, top = _list(item)
    alternatives = tuple((_bytes(b), _number(v)) for b, v in (_list(pair) for pair in _list(top)))
    return TokenLogprob(_bytes(token), _number(logprob), alternatives)


def _call(item: object) -> ToolCall:
    if not isinstance(item, Mapping) or set(item) != {"id", "name", "arguments"}:
        raise ValueError("not a tool call")
    if not all(isinstance(item[key], str) for key in ("id", "name", "arguments")):
        raise ValueError("not a tool call")
    return ToolCall(item["id"], item["name"], item["arguments"])


class DeltaAssembler:
    """The worker's side: an engine's chunks, flush by flush, as deltas: with tools, each choice's text goes
    through a tool-call parser (content out, calls once complete; a choice that called ends in ``tool_calls``).
    Within a flush, the deltas of one choice are merged into one."""

    def __init__(self, parse_tools: bool) -> None:
        self._parse_tools = parse_tools
        self._parsers: dict[int, ToolCallParser] = {}

    def deltas(self, chunks: Iterable[TextChunk]) -> list[Delta]:
        merged: dict[int, Delta] = {}
        for chunk in chunks:
            delta = self._delta(chunk)
            before = merged.get(delta.index)
            merged[delta.index] = delta if before is None else _merge(before, delta)
        return [merged[index] for index in sorted(merged)]

    def _delta(self, chunk: TextChunk) -> Delta:
        text, finish = chunk.text, chunk.finish_reason
        calls: tuple[ToolCall, ...] = ()
        if self._parse_tools:
            parser = self._parsers.setdefault(chunk.index, ToolCallParser())
            text, completed = parser.push(text)
            calls = tuple(completed)
            if finish is not None:
                text += parser.flush()
                if finish == "stop" and parser.calls:
                    finish = "tool_calls"
        return Delta(chunk.index, text, chunk.logprobs, calls, finish)


def _merge(first: Delta, second: Delta) -> Delta:
    return Delta(
        first.index,
        first.text + second.text,
        first.logprobs + second.logprobs,
        first.tool_calls + second.tool_calls,
        second.finish_reason or first.finish_reason,
    )
