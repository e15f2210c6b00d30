"""The grammar a request's output must follow, for the worker's engine: an xgrammar structural tag (canonical
JSON, the key its compiled form is cached under) built from an ``OutputSpec``.

Schemas become EBNF through xgrammar's JSON Schema converter with whitespace fixed (``", "`` and ``": "``: a
model cannot pad an answer with whitespace until its budget runs out), with one correction: xgrammar's strings
with ``minLength``/``maxLength`` admit raw control characters, which no JSON parser accepts; here they exclude
them (and escapes), as its unbounded strings already do.

Tool calls are written the way Qwen2.5 (and the tiny model, whose chat template is the same) writes them::

    <tool_call>
    {"name": "<function name>", "arguments": <JSON that validates against the function's parameters>}
    </tool_call>

``auto`` lets the model write text, and constrains each call it starts; ``required`` allows calls only (one, or
up to ``MAX_TOOL_CALLS`` separated by newlines with ``parallel_tool_calls``); a named function allows exactly
one call of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import xgrammar
from xgrammar.structural_tag import (
    ConstStringFormat,
    GrammarFormat,
    OrFormat,
    RepeatFormat,
    SequenceFormat,
    StructuralTag,
    TagFormat,
    TriggeredTagsFormat,
)

from securechat.structured.schemas import UnsupportedSchema, check_schema
from securechat.structured.spec import TOOL_CALL_BEGIN, TOOL_CALL_END, Forced, OutputSpec, Tool

MAX_TOOL_CALLS: Final = 8  # per answer with parallel_tool_calls: a bound, so a call list always ends
_BOUNDED_STRING_CHAR: Final = '[^\\"\\\\\\r\\n]'  # xgrammar's bounded-length string character, as it prints it
_JSON_STRING_CHAR: Final = '[^\\"\\\\\\0-\\x1f]'  # a JSON string's unescaped character


def schema_grammar(schema: Mapping[str, Any]) -> str:
    """The EBNF grammar of JSON text that validates against ``schema`` (checked first)."""
    check_schema(schema)
    try:
        grammar = xgrammar.Grammar.from_json_schema(dict(schema), any_whitespace=False, strict_mode=True)
    except Exception as exc:  # xgrammar's messages may quote the schema: keep only that it failed
        reason = f"the schema cannot be turned into a grammar ({type(exc).__name__})"
        raise UnsupportedSchema("schema", reason) from None
    return str(grammar).replace(_BOUNDED_STRING_CHAR, _JSON_STRING_CHAR)


def json_object_grammar() -> str:
    """``response_format: json_object``: any JSON object, without free whitespace."""
    return str(xgrammar.Grammar.from_json_schema({"type": "object"}, any_whitespace=False, strict_mode=False))


def output_grammar(spec: OutputSpec) -> str | None:
    """The structural tag that constrains the output (canonical JSON), or None when nothing does.
    UnsupportedSchema when a schema cannot become a grammar."""
    if not spec.constrained:
        return None
    kind = spec.response_format.kind
    if kind == "json_object":
        tag = StructuralTag(format=GrammarFormat(grammar=json_object_grammar()))
    elif kind == "json_schema":
        assert spec.response_format.schema is not None
        tag = StructuralTag(format=GrammarFormat(grammar=schema_grammar(spec.response_format.schema)))
    else:
        tag = StructuralTag(format=_tool_format(spec))
    return json.dumps(tag.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def _tool_format(spec: OutputSpec) -> Any:
    if spec.tool_choice == "auto":
        tags = [_call_tag(tool) for tool in spec.tools]
        return TriggeredTagsFormat(triggers=[TOOL_CALL_BEGIN], tags=tags, stop_after_first=not spec.parallel_tool_calls)
    forced = spec.tool_choice.name if isinstance(spec.tool_choice, Forced) else None
    tools = [tool for tool in spec.tools if forced in (None, tool.name)]
    one_call = OrFormat(elements=[_call_tag(tool) for tool in tools]) if len(tools) > 1 else _call_tag(tools[0])
    if not spec.parallel_tool_calls or forced is not None:
        return one_call
    more = SequenceFormat(elements=[ConstStringFormat(value="\n"), one_call])
    return SequenceFormat(elements=[one_call, RepeatFormat(min=0, max=MAX_TOOL_CALLS - 1, content=more)])


def _call_tag(tool: Tool) -> TagFormat:
    return TagFormat(
        begin=f'{TOOL_CALL_BEGIN}\n{{"name": "{tool.name}", "arguments": ',
        content=GrammarFormat(grammar=schema_grammar(tool.parameters)),
        end=f"}}\n{TOOL_CALL_END}",
    )
