"""OpenAPI declarations for routes that read their JSON body by hand (after authentication, or to refuse
unknown fields by name), so FastAPI cannot see it: the body's schema, inlined."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def json_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON body of ``model`` (its schema inlined: no components)."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": inline_refs(model.model_json_schema())}},
        }
    }


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema with its ``$defs`` references replaced by the definitions (no recursion in ours)."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items() if key != "$defs"}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
