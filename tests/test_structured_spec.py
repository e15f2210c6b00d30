"""Response formats, tools and tool choices as the SDK and the worker read them; tool calls as the worker
parses them out of streamed text."""

from __future__ import annotations

import json
from typing import Any

import pytest

from securechat.structured.spec import Forced, InvalidOutputSpec, parse_output_spec
from securechat.structured.tool_calls import ToolCallParser

TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def test_defaults_and_the_openai_shapes() -> None:
    plain = parse_output_spec(None, None, None, None)
    assert not plain.constrained and plain.tool_choice == "none" and plain.prompt_tools() == ()
    with_tools = parse_output_spec(None, [TOOL], None, None)
    assert with_tools.tool_choice == "auto" and with_tools.calls_tools and with_tools.prompt_tools()[0] == TOOL
    named = parse_output_spec(None, [TOOL], {"type": "function", "function": {"name": "lookup"}}, False)
    assert named.tool_choice == Forced("lookup") and not named.parallel_tool_calls
    assert not parse_output_spec(None, [TOOL], "none", None).calls_tools  # tools stay out of the prompt
    schema = {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": True}}
    assert parse_output_spec(schema, None, None, None).response_format.kind == "json_schema"
    assert parse_output_spec({"type": "json_object"}, None, None, None).constrained


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (({"type": "yaml"}, None, None, None), "response_format"),
        (({"type": "json_schema", "json_schema": {"schema": {}}}, None, None, None), "response_format.json_schema"),
        (
            ({"type": "json_schema", "json_schema": {"name": "s", "schema": {"not": {}}}}, None, None, None),
            "response_format.json_schema.schema.not",
        ),
        ((None, [{"type": "code_interpreter"}], None, None), "tools"),
        ((None, [{"type": "function", "function": {"name": "has space"}}], None, None), "tools.function.name"),
        (
            (
                None,
                [{"type": "function", "function": {"name": "f", "parameters": {"type": "array", "uniqueItems": True}}}],
                None,
                None,
            ),
            "tools.function.parameters.uniqueItems",
        ),
        ((None, [TOOL, TOOL], None, None), "tools"),
        ((None, [TOOL], {"type": "function", "function": {"name": "other"}}, None), "tool_choice"),
        ((None, None, "required", None), "tool_choice"),
        ((None, [TOOL], "sometimes", None), "tool_choice"),
        (({"type": "json_object"}, [TOOL], "auto", None), "response_format"),
    ],
)
def test_what_cannot_be_honoured_is_named(fields: tuple[Any, ...], param: str) -> None:
    with pytest.raises(InvalidOutputSpec) as refused:
        parse_output_spec(*fields)
    assert refused.value.param == param


def feed(pieces: list[str]) -> tuple[str, list[tuple[str, Any]]]:
    parser = ToolCallParser()
    content = []
    for piece in pieces:
        text, _ = parser.push(piece)
        content.append(text)
    content.append(parser.flush())
    return "".join(content), [(call.name, json.loads(call.arguments)) for call in parser.calls]


def test_calls_are_parsed_across_any_split_and_content_kept() -> None:
    text = (
        'Checking.<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'
    )
    for size in (1, 2, 3, 7, len(text)):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        assert feed(pieces) == ("Checking.", [("a", {"x": 1}), ("b", {})])


def test_text_that_only_looks_like_a_call_is_content() -> None:
    assert feed(["a <tool", "_cal", "l is < 3"]) == ("a <tool_call is < 3", [])
    assert feed(["<tool_call>\n{broken}\n</tool_call> after"]) == ("<tool_call>\n{broken}\n</tool_call> after", [])
    assert feed(['x<tool_call>\n{"name": "a", "argu']) == ('x<tool_call>\n{"name": "a", "argu', [])  # cut by length


def test_call_ids_are_unique_and_arguments_are_json_text() -> None:
    parser = ToolCallParser()
    _, calls = parser.push('<tool_call>\n{"name": "a", "arguments": {"q": "é"}}\n</tool_call>' * 2)
    assert len({call.id for call in calls}) == 2 and all(call.id.startswith("call_") for call in calls)
    assert calls[0].arguments == '{"q":"é"}' and "é" not in repr(calls[0])
