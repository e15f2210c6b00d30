"""What a request asks of its output's shape: a response format, tools and a tool choice (OpenAI's chat
shapes), checked. Pure Python: the SDK checks a request before sealing it, the worker again after opening it
(and builds the grammar from it: ``grammar.py``).

Schemas are always enforced, ``strict`` or not: what validates under strict validates without it.
``tool_choice``: ``auto`` (the default with tools) lets the model answer or call; ``required`` makes it call;
a named function makes it call that one; ``none`` (the default without tools) leaves tools out of the prompt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from securechat.structured.schemas import UnsupportedSchema, check_schema

MAX_TOOLS: Final = 64
TOOL_CALL_BEGIN: Final = "<tool_call>"
TOOL_CALL_END: Final = "</tool_call>"
_NAME: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
_EMPTY_PARAMETERS: Final = {"type": "object", "properties": {}, "additionalProperties": False}


class InvalidOutputSpec(ValueError):
    """A response format, tool or tool choice that cannot be honoured; ``param`` names the field (and, for a
    schema the grammar cannot enforce, the keyword)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = field(default=None, repr=False)  # json_schema: tenant data, never in a repr
    name: str = field(default="", repr=False)

    @classmethod
    def from_dict(cls, data: object) -> ResponseFormat:
        """OpenAI's chat ``response_format`` ({"type": "json_schema", "json_schema": {"name", "schema", "strict"}})."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping) or data.get("type") not in ("text", "json_object", "json_schema"):
            raise InvalidOutputSpec("response_format", "type is text, json_object or json_schema")
        if data["type"] != "json_schema":
            return cls(data["type"])
        spec = data.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise InvalidOutputSpec("response_format.json_schema", "json_schema needs a name and a schema")
        schema = spec.get("schema", {})
        _check(schema, "response_format.json_schema.schema")
        return cls("json_schema", schema, spec["name"])

    def to_dict(self) -> dict[str, Any] | None:
        if self.kind == "text":
            return None
        if self.kind == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema, "strict": True}}


@dataclass(frozen=True, slots=True)
class Tool:
    name: str = field(repr=False)
    parameters: Mapping[str, Any] = field(repr=False)
    description: str = field(default="", repr=False)

    @classmethod
    def from_dict(cls, data: object) -> Tool:
        """OpenAI's chat tool: {"type": "function", "function": {"name", "description", "parameters", "strict"}}."""
        if (
            not isinstance(data, Mapping)
            or data.get("type") != "function"
            or not isinstance(data.get("function"), Mapping)
        ):
            raise InvalidOutputSpec("tools", 'each tool is {"type": "function", "function": {...}}')
        function = data["function"]
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidOutputSpec("tools.function.name", "a function name is 1 to 64 of a-z, A-Z, 0-9, _ and -")
        description = function.get("description", "")
        if not isinstance(description, str):
            raise InvalidOutputSpec("tools.function.description", "a description is a string")
        parameters = function.get("parameters", _EMPTY_PARAMETERS)
        _check(parameters, "tools.function.parameters")
        return cls(name, parameters, description)

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI shape, as chat templates render it."""
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class Forced:
    """``tool_choice`` naming the one function to call."""

    name: str = field(repr=False)


ToolChoice = Literal["none", "auto", "required"] | Forced


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """Everything about the output's shape a request asks for."""

    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True

    def __post_init__(self) -> None:
        if len(self.tools) > MAX_TOOLS:
            raise InvalidOutputSpec("tools", f"at most {MAX_TOOLS} tools")
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise InvalidOutputSpec("tools", "function names must be unique")
        if isinstance(self.tool_choice, Forced) and self.tool_choice.name not in names:
            raise InvalidOutputSpec("tool_choice", "tool_choice names a function that is not among the tools")
        if self.tool_choice == "required" and not self.tools:
            raise InvalidOutputSpec("tool_choice", "tool_choice required needs tools")
        if self.calls_tools and self.response_format.kind != "text":
            raise InvalidOutputSpec("response_format", "response_format cannot be combined with tool calls")

    @property
    def calls_tools(self) -> bool:
        """Whether tools are offered to the model (in the prompt) and its tool calls parsed."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def constrained(self) -> bool:
        return self.calls_tools or self.response_format.kind != "text"

    def prompt_tools(self) -> tuple[dict[str, Any], ...]:
        return tuple(tool.to_dict() for tool in self.tools) if self.calls_tools else ()


def _check(schema: object, param: str) -> None:
    try:
        check_schema(schema)
    except UnsupportedSchema as unsupported:
        raise InvalidOutputSpec(f"{param}.{unsupported.keyword}", str(unsupported)) from None


def parse_output_spec(
    response_format: object, tools: object, tool_choice: object, parallel_tool_calls: object
) -> OutputSpec:
    """From the request body's fields (OpenAI's chat shapes); InvalidOutputSpec names what is wrong."""
    if tools is not None and not isinstance(tools, Sequence):
        raise InvalidOutputSpec("tools", "tools is a list")
    parsed_tools = tuple(Tool.from_dict(tool) for tool in tools or ())
    return OutputSpec(
        ResponseFormat.from_dict(response_format),
        parsed_tools,
        _tool_choice(tool_choice, bool(parsed_tools)),
        parallel_tool_calls if isinstance(parallel_tool_calls, bool) else True,
    )


def _tool_choice(value: object, has_tools: bool) -> ToolChoice:
    if value is None:
        return "auto" if has_tools else "none"
    if value == "none" or value == "auto" or value == "required":
        return value
    if isinstance(value, Mapping) and value.get("type") == "function" and isinstance(value.get("function"), Mapping):
        name = value["function"].get("name")
        if isinstance(name, str):
            return Forced(name)
    raise InvalidOutputSpec("tool_choice", 'tool_choice is none, auto, required or {"type": "function", ...}')
