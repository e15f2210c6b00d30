"""Which JSON Schemas constrained decoding can keep: every keyword is one the grammar enforces exactly, or the
schema is refused naming the first one that is not (rather than accepted and then broken).

``tests/test_structured_grammar.py`` samples random walks of the grammar for each keyword below and validates
them with ``jsonschema``; keywords xgrammar ignores or only half enforces (allOf, not, if/then/else,
uniqueItems, contains, dependentRequired, a number's multipleOf, format with a length) are refused here. Pure
Python: the SDK and the proxy check a schema with it before anything is sealed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

MAX_SCHEMA_BYTES: Final = 64 << 10
MAX_SCHEMA_DEPTH: Final = 32

# Keywords that only describe: no effect on what validates.
ANNOTATIONS: Final = frozenset(
    {
        "title",
        "description",
        "examples",
        "default",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
# Keywords the grammar enforces exactly.
ENFORCED: Final = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "$ref",
        "$defs",
        "definitions",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minProperties",
        "maxProperties",
        "patternProperties",
        "propertyNames",
    }
)
# String formats the converter writes a grammar for, each checked by jsonschema's format checker in the tests.
FORMATS: Final = frozenset(
    {"date", "date-time", "uuid", "email", "ipv6", "hostname", "uri", "uri-reference", "duration"}
)
# Keywords whose value is a schema, a list of schemas, or a name -> schema mapping.
_SUBSCHEMA: Final = frozenset({"additionalProperties", "items", "propertyNames"})
_SUBSCHEMA_LISTS: Final = frozenset({"prefixItems", "anyOf", "oneOf"})
_SUBSCHEMA_MAPS: Final = frozenset({"properties", "$defs", "definitions", "patternProperties"})


class UnsupportedSchema(ValueError):
    """A schema the grammar cannot enforce; ``keyword`` names what to change (a JSON Schema keyword, or
    ``schema`` for a schema that is not one)."""

    def __init__(self, keyword: str, reason: str) -> None:
        super().__init__(f"{keyword}: {reason}")
        self.keyword = keyword


def check_schema(schema: object) -> None:
    """Raise UnsupportedSchema unless every keyword of ``schema`` is one the grammar enforces."""
    if not isinstance(schema, Mapping):
        raise UnsupportedSchema("schema", "a JSON Schema object is needed")
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError):
        raise UnsupportedSchema("schema", "the schema is not JSON") from None
    if size > MAX_SCHEMA_BYTES:
        raise UnsupportedSchema("schema", f"the schema is larger than {MAX_SCHEMA_BYTES} bytes")
    for node, depth in _walk(schema, 0):
        if depth > MAX_SCHEMA_DEPTH:
            raise UnsupportedSchema("schema", f"the schema nests deeper than {MAX_SCHEMA_DEPTH}")
        _check_node(node)


def _check_node(node: Mapping[str, Any]) -> None:
    for keyword, value in node.items():
        if keyword in ANNOTATIONS:
            continue
        if keyword not in ENFORCED:
            raise UnsupportedSchema(keyword, "constrained decoding cannot enforce this keyword")
        if keyword == "$ref" and not (isinstance(value, str) and value.startswith("#")):
            raise UnsupportedSchema("$ref", "only references inside the schema (#/...) are supported")
        if keyword == "format" and value not in FORMATS:
            raise UnsupportedSchema("format", f"supported formats: {', '.join(sorted(FORMATS))}")
        if keyword == "multipleOf" and node.get("type") != "integer":
            raise UnsupportedSchema("multipleOf", "supported for integers only")
    if "format" in node and ("minLength" in node or "maxLength" in node):
        raise UnsupportedSchema("maxLength" if "maxLength" in node else "minLength", "not with format")


def _walk(node: Any, depth: int) -> Iterator[tuple[Mapping[str, Any], int]]:
    """Every schema object in ``node`` (booleans are schemas too, with nothing to check)."""
    if isinstance(node, bool):
        return
    if not isinstance(node, Mapping):
        raise UnsupportedSchema("schema", "every subschema must be an object or a boolean")
    yield node, depth
    for keyword, value in node.items():
        if keyword in _SUBSCHEMA:
            yield from _walk(value, depth + 1)
        elif keyword in _SUBSCHEMA_LISTS:
            if not isinstance(value, list):
                raise UnsupportedSchema(keyword, "must be a list of schemas")
            for item in value:
                yield from _walk(item, depth + 1)
        elif keyword in _SUBSCHEMA_MAPS:
            if not isinstance(value, Mapping):
                raise UnsupportedSchema(keyword, "must map names to schemas")
            for item in value.values():
                yield from _walk(item, depth + 1)
