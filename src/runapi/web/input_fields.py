"""A model's typed inputs as rows for people (model page, SKILL.md), read from its JSON Schema."""

from __future__ import annotations

from typing import Any

import msgspec

from runapi.catalog import JsonSchema


class InputField(msgspec.Struct, frozen=True):
    """One request field: its name, JSON type, whether it is required, and the values it accepts."""

    name: str
    kind: str
    required: bool
    accepts: str  # "1024x1024, 768x1344", "1–1536", "≤ 512" (characters or items): language-neutral


def _kind(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        kinds = [_kind(option) for option in schema["anyOf"]]
        return " or ".join(dict.fromkeys(kinds))
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_kind(schema.get('items', {}))}"
    if kind is None and "enum" in schema:
        return "string"
    return str(kind or "any")


def _accepts(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return ", ".join(str(value).lower() if isinstance(value, bool) else str(value) for value in schema["enum"])
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return str(low) if low == high else f"{low}–{high}"
    if low is not None:
        return f"≥ {low}"
    if schema.get("maxLength"):
        return f"≤ {schema['maxLength']}"
    if schema.get("maxItems") and schema.get("type") == "array":
        return f"≤ {schema['maxItems']}"
    options = schema.get("anyOf", [])
    limits = [o["maxItems"] for o in options if o.get("maxItems")]
    return f"≤ {max(limits)}" if limits else ""


def input_fields(schema: JsonSchema) -> list[InputField]:
    """The request fields of `schema` in its order, `model` first; "required" counts a field that
    one of its `anyOf` alternatives requires alone (`prompt` when there is no image input)."""
    required = set(schema.get("required", []))
    alternatives = [option.get("required", []) for option in schema.get("anyOf", [])]
    if len(alternatives) == 1:
        required.update(alternatives[0])
    return [InputField(name, _kind(spec), name in required, _accepts(spec))
            for name, spec in schema.get("properties", {}).items()]
