"""Reading tool calls out of a model's text as it streams: content goes on, each ``<tool_call>`` block becomes
a call in OpenAI's shape once its closing tag arrives.

Text that might be the start of ``<tool_call>`` is held back until it is clear it is not; text after the first
call is content only if it is more than whitespace (the newlines between calls are format, not content). A call
cut off by the token budget, or one that does not parse, is given back as content, so nothing is lost.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from securechat.structured.spec import TOOL_CALL_BEGIN, TOOL_CALL_END


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str = field(repr=False)
    arguments: str = field(repr=False)  # JSON text, as OpenAI returns it

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass(slots=True)
class ToolCallParser:
    _buffer: str = ""
    _in_call: bool = False
    calls: list[ToolCall] = field(default_factory=list)

    def push(self, text: str) -> tuple[str, list[ToolCall]]:
        """Content that is now certain, and the calls completed by ``text``."""
        self._buffer += text
        content: list[str] = []
        completed: list[ToolCall] = []
        while True:
            if self._in_call:
                end = self._buffer.find(TOOL_CALL_END)
                if end < 0:
                    break
                body, self._buffer = self._buffer[:end], self._buffer[end + len(TOOL_CALL_END) :]
                self._in_call = False
                call = _parse_call(body)
                if call is None:
                    content.append(TOOL_CALL_BEGIN + body + TOOL_CALL_END)
                else:
                    completed.append(call)
                    self.calls.append(call)
                continue
            start = self._buffer.find(TOOL_CALL_BEGIN)
            if start >= 0:
                content.append(self._content(self._buffer[:start]))
                self._buffer = self._buffer[start + len(TOOL_CALL_BEGIN) :]
                self._in_call = True
                continue
            keep = _partial_prefix(self._buffer, TOOL_CALL_BEGIN)
            content.append(self._content(self._buffer[: len(self._buffer) - keep]))
            self._buffer = self._buffer[len(self._buffer) - keep :]
            break
        return "".join(content), completed

    def flush(self) -> str:
        """The end of the text: whatever is held back is content (an unfinished call included)."""
        held = (TOOL_CALL_BEGIN if self._in_call else "") + self._buffer
        self._buffer, self._in_call = "", False
        return self._content(held)

    def _content(self, text: str) -> str:
        return "" if self.calls and not text.strip() else text


def _partial_prefix(text: str, marker: str) -> int:
    """How many characters at the end of ``text`` could begin ``marker``."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


def _parse_call(body: str) -> ToolCall | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or "arguments" not in data:
        return None
    arguments = json.dumps(data["arguments"], ensure_ascii=False, separators=(",", ":"))
    return ToolCall(new_call_id(), data["name"], arguments)
