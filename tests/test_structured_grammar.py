"""Grammars from schemas and tools: random walks over each grammar (tokens drawn at random among those it
allows, with the tiny model's tokenizer) always end in JSON that validates, for every keyword we accept; tool
choices give the call shapes they promise."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import torch
import xgrammar
from transformers import AutoTokenizer

from securechat.engine.constraints import GrammarCache, mask_logits
from securechat.structured.grammar import MAX_TOOL_CALLS, output_grammar, schema_grammar
from securechat.structured.schemas import UnsupportedSchema
from securechat.structured.spec import Forced, OutputSpec, ResponseFormat, Tool
from securechat.structured.tool_calls import ToolCallParser
from securechat.tiny_model import ensure_tiny_model

WALKS = 40
S = {"type": "string", "maxLength": 6}
# One schema per accepted keyword (or feature), each bounded so a walk ends within the budget.
SCHEMAS: dict[str, dict[str, Any]] = {
    "type list": {"type": ["integer", "boolean"], "minimum": 0, "maximum": 9},
    "properties, required, additionalProperties false": {
        "type": "object",
        "properties": {"a": {"type": "boolean"}, "b": S},
        "required": ["a"],
        "additionalProperties": False,
    },
    "additionalProperties schema, maxProperties": {
        "type": "object",
        "additionalProperties": {"type": "boolean"},
        "propertyNames": {"maxLength": 3},
        "maxProperties": 2,
    },
    "items, minItems, maxItems": {"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 3},
    "prefixItems": {"type": "array", "prefixItems": [{"const": 1}, {"enum": ["x", "y"]}], "items": False},
    "enum with escapes and unicode": {"enum": ["é", 'a"b', "x\ny", None, 3]},
    "const object": {"const": {"k": [1, "v"]}},
    "anyOf": {"anyOf": [{"type": "boolean"}, {"const": "z"}]},
    "oneOf": {"oneOf": [{"type": "null"}, S]},
    "$ref and $defs": {
        "$defs": {"flag": {"type": "boolean"}},
        "type": "object",
        "properties": {"f": {"$ref": "#/$defs/flag"}},
        "required": ["f"],
        "additionalProperties": False,
    },
    "recursive $ref": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}},
                "required": ["next"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    "minLength, maxLength (no raw control characters)": {"type": "string", "minLength": 2, "maxLength": 5},
    "pattern": {"type": "string", "pattern": "^[a-c]{2,3}-[0-9]$"},
    "format date": {"type": "string", "format": "date"},
    "format date-time": {"type": "string", "format": "date-time"},
    "format uuid": {"type": "string", "format": "uuid"},
    "integer range": {"type": "integer", "minimum": -50, "maximum": 99999},
    "exclusive bounds": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 5},
    "number range": {"type": "number", "minimum": -1.5, "maximum": 2.5},
    "multipleOf integer": {"type": "integer", "multipleOf": 3, "minimum": 0, "maximum": 30},
    "minProperties": {
        "type": "object",
        "properties": {"a": {"type": "boolean"}, "b": {"type": "boolean"}},
        "minProperties": 1,
        "additionalProperties": False,
    },
    "patternProperties": {
        "type": "object",
        "patternProperties": {"^x": {"type": "boolean"}},
        "additionalProperties": False,
        "maxProperties": 1,
    },
}


@pytest.fixture(scope="module")
def cache() -> GrammarCache:
    tokenizer = AutoTokenizer.from_pretrained(ensure_tiny_model())
    return GrammarCache(tokenizer, len(tokenizer), [tokenizer.eos_token_id])


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(ensure_tiny_model())


def walks(cache: GrammarCache, spec: str, count: int, max_steps: int = 400) -> Iterator[list[int]]:
    """Token ids of ``count`` random walks of ``spec`` that reached its end (the stop token excluded)."""
    rng = torch.Generator().manual_seed(7)
    bitmask = cache.new_bitmask(1)
    for _ in range(count):
        matcher = cache.matcher(spec)
        ids: list[int] = []
        for _ in range(max_steps):
            logits = torch.randn(1, cache.vocab_size, generator=rng) * 3
            mask_logits(logits, [(0, matcher)], bitmask)
            token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=rng)[0, 0])
            assert matcher.accept_token(token)
            if matcher.is_terminated():
                break
            ids.append(token)
        else:
            pytest.fail("a walk did not end: the schema's output is unbounded")
        yield ids


def json_format(schema: dict[str, Any]) -> str:
    grammar = output_grammar(OutputSpec(ResponseFormat("json_schema", schema, "s")))
    assert grammar is not None
    return grammar


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_walk_of_a_schemas_grammar_validates(name: str, cache: GrammarCache, tokenizer: Any) -> None:
    schema = SCHEMAS[name]
    # Dates keep their shape (month 01-12, day 01-31), not the calendar: "2025-11-31" can come out
    # (docs/structured-outputs.md). Every other format is checked as jsonschema's format checker does.
    calendar = schema.get("format") in ("date", "date-time")
    checker = None if calendar else jsonschema.FormatChecker()
    for ids in walks(cache, json_format(schema), WALKS):
        value = json.loads(tokenizer.decode(ids))  # strict JSON: no raw control characters
        jsonschema.validate(value, schema, format_checker=checker)
        if calendar:
            assert re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])([Tt].*)?", value)


def test_xgrammars_bounded_strings_are_corrected() -> None:
    """The converter's own bounded strings admit control characters; ours exclude them."""
    raw = str(xgrammar.Grammar.from_json_schema({"type": "string", "maxLength": 3}, any_whitespace=False))
    assert '[^\\"\\\\\\r\\n]' in raw
    ours = schema_grammar({"type": "string", "maxLength": 3})
    assert '[^\\"\\\\\\r\\n]' not in ours and '[^\\"\\\\\\0-\\x1f]' in ours


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"allOf": [{"type": "integer"}, {"maximum": 3}]}, "allOf"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"not": {"type": "boolean"}}, "not"),
        ({"type": "integer", "if": {"minimum": 5}, "then": {"multipleOf": 2}}, "if"),
        ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired"),
        ({"type": "array", "contains": {"const": 2}}, "contains"),
        ({"type": "number", "multipleOf": 0.5}, "multipleOf"),
        ({"type": "string", "format": "ipv4"}, "format"),
        ({"type": "string", "format": "email", "maxLength": 9}, "maxLength"),
        ({"$ref": "https://example.com/s.json"}, "$ref"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "unevaluatedProperties": False}}},
            "unevaluatedProperties",
        ),
        ({"type": "object", "properties": {"a": "not a schema"}}, "schema"),
        ([1, 2], "schema"),
    ],
)
def test_keywords_the_grammar_cannot_keep_are_refused_by_name(schema: Any, keyword: str) -> None:
    with pytest.raises(UnsupportedSchema) as refused:
        schema_grammar(schema)
    assert refused.value.keyword == keyword


WEATHER = Tool(
    "get_weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
TIME = Tool("get_time", {"type": "object", "properties": {"zone": {"enum": ["utc", "cet"]}}, "required": ["zone"]})


def calls_of(cache: GrammarCache, tokenizer: Any, spec: OutputSpec, count: int) -> Iterator[tuple[str, list[Any]]]:
    grammar = output_grammar(spec)
    assert grammar is not None
    for ids in walks(cache, grammar, count, max_steps=2000):
        parser = ToolCallParser()
        text, calls = parser.push(tokenizer.decode(ids))
        yield text + parser.flush(), calls


@pytest.mark.parametrize("parallel", [True, False])
def test_required_calls_only_and_each_validates(parallel: bool, cache: GrammarCache, tokenizer: Any) -> None:
    tools = {tool.name: tool for tool in (WEATHER, TIME)}
    spec = OutputSpec(tools=tuple(tools.values()), tool_choice="required", parallel_tool_calls=parallel)
    counts = set()
    for content, calls in calls_of(cache, tokenizer, spec, 20):
        assert content == "" and 1 <= len(calls) <= (MAX_TOOL_CALLS if parallel else 1)
        counts.add(len(calls))
        for call in calls:
            jsonschema.validate(json.loads(call.arguments), tools[call.name].parameters)
    assert parallel or counts == {1}


def test_a_named_function_is_the_one_call(cache: GrammarCache, tokenizer: Any) -> None:
    spec = OutputSpec(tools=(WEATHER, TIME), tool_choice=Forced("get_time"))
    for content, calls in calls_of(cache, tokenizer, spec, 10):
        assert content == "" and [call.name for call in calls] == ["get_time"]
        assert json.loads(calls[0].arguments)["zone"] in ("utc", "cet")


def test_auto_constrains_a_call_once_it_starts(cache: GrammarCache) -> None:
    """Under auto the model may write anything; once it writes <tool_call>, only a valid call can follow."""
    spec = OutputSpec(tools=(WEATHER,), tool_choice="auto")
    grammar = output_grammar(spec)
    assert grammar is not None
    matcher = cache.matcher(grammar)
    assert matcher.accept_string("Let me check. ")
    assert matcher.accept_string('<tool_call>\n{"name": "get_weather", "arguments": ')
    assert not matcher.accept_string('{"town": ')  # not a parameter of get_weather
    assert matcher.accept_string('{"city": "Oslo", "unit": "c"}}\n</tool_call>')


def test_the_cache_compiles_each_grammar_once(cache: GrammarCache) -> None:
    spec = json_format({"type": "object", "properties": {"q": {"enum": [1, 2]}}, "required": ["q"]})
    before = cache.compilations
    for _ in range(5):
        cache.matcher(spec)
    assert cache.compilations == before + 1


def test_random_seeds_do_not_matter(cache: GrammarCache, tokenizer: Any) -> None:
    """Different walks give different valid outputs: the grammar constrains, it does not dictate."""
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 999}},
        "required": ["n"],
    }
    outputs = {tokenizer.decode(ids) for ids in walks(cache, json_format(schema), 15)}
    assert len(outputs) > 5
    random.Random(0).shuffle(list(outputs))
