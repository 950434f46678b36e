"""A small, deterministic JSON Schema instance generator, so simulated tool calls and JSON answers validate.

`example_value(schema)` returns a minimal instance: for objects, the `required` properties only;
for arrays, `max(minItems, 1)` items (none when `maxItems` is 0); strings are reply words
("lorem", "ipsum", ...) padded or cut to `minLength` / `maxLength`, or a fixed example of a
known `format`; numbers are the smallest allowed value from 0 up. `const`, then `enum[0]`,
then `default` win over the type. `$ref` (local JSON pointers), `allOf` (merged), `anyOf` /
`oneOf` (the first branch that is not `null`) and lists of types are understood; `pattern`,
`not`, `if`/`then` and `dependentRequired` are not (such values may not validate).
Pure: no I/O, no randomness.
"""

from __future__ import annotations

import math
from typing import Any

from .tokens import reply_words

__all__ = ["MAX_DEPTH", "example_value"]

MAX_DEPTH = 12
"""Deeper nesting (a recursive `$ref`) yields `None` for optional detail: generation always ends."""

_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "duration": "P1D",
    "email": "lorem@example.com",
    "idn-email": "lorem@example.com",
    "hostname": "example.com",
    "idn-hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "uri": "https://example.com/lorem",
    "uri-reference": "https://example.com/lorem",
    "iri": "https://example.com/lorem",
    "url": "https://example.com/lorem",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "json-pointer": "/lorem",
    "regex": "lorem",
}
_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")


def example_value(schema: Any, *, root: Any = None, index: int = 0, depth: int = 0) -> Any:
    """A value that validates against `schema` (see the module notes for what is understood).

    `root` is the document `$ref`s point into (default: `schema`); `index` varies strings, numbers and
    enum picks between the items of one array (and inside them).
    """
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return _word(index)  # `true` or a malformed schema: anything goes
    if depth > MAX_DEPTH:
        return None
    if isinstance(schema.get("$ref"), str):
        target = _resolve(root, schema["$ref"])
        rest = {key: value for key, value in schema.items() if key != "$ref"}
        return example_value(_merge([target, rest]) if rest else target, root=root, index=index, depth=depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][min(index, len(schema["enum"]) - 1)]
    if "default" in schema:
        return schema["default"]
    if isinstance(schema.get("allOf"), list):
        merged = _merge([schema, *schema["allOf"]], drop="allOf")
        return example_value(merged, root=root, index=index, depth=depth + 1)
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            branch = next((b for b in branches if not _is_null(b)), branches[0])
            rest = {k: v for k, v in schema.items() if k != key}
            return example_value(_merge([rest, branch]), root=root, index=index, depth=depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        return _object(schema, root, index, depth)
    if kind == "array":
        return _array(schema, root, depth)
    if kind == "string":
        return _string(schema, index)
    if kind in ("integer", "number"):
        return _number(schema, index, integer=kind == "integer")
    if kind == "boolean":
        return True
    return None


def _word(index: int) -> str:
    return reply_words(index + 1)[-1]


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if isinstance(k, str)]
        return next((k for k in _TYPE_ORDER if k in named and k != "null"), named[0] if named else "string")
    if isinstance(kind, str):
        return kind
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(key in schema for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _resolve(root: Any, ref: str) -> Any:
    """A local JSON pointer (`#/$defs/Name`); anything else resolves to the empty schema."""
    if not ref.startswith("#"):
        return {}
    node = root
    for raw in ref[1:].split("/")[1:]:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _merge(schemas: list[Any], drop: str = "") -> dict[str, Any]:
    """`allOf`-style merge: properties joined, `required` united, other keys from the last one that sets them."""
    merged: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for schema in schemas:
        if not isinstance(schema, dict):
            continue
        for key, value in schema.items():
            if key == "properties" and isinstance(value, dict):
                properties.update(value)
            elif key == "required" and isinstance(value, list):
                required += [name for name in value if name not in required]
            elif key != drop:
                merged[key] = value
    if properties:
        merged["properties"] = properties
    if required:
        merged["required"] = required
    return merged


def _object(schema: dict[str, Any], root: Any, index: int, depth: int) -> dict[str, Any]:
    declared = schema.get("properties")
    properties: dict[str, Any] = declared if isinstance(declared, dict) else {}
    required = [name for name in schema.get("required") or () if isinstance(name, str)]
    extra = schema.get("additionalProperties")
    value: dict[str, Any] = {}
    for name in required:
        sub = properties.get(name, extra if isinstance(extra, dict) else {})
        value[name] = example_value(sub, root=root, index=index, depth=depth + 1)
    minimum = schema.get("minProperties")
    if isinstance(minimum, int):  # fill up with optional properties, in their declared order
        for name, sub in properties.items():
            if len(value) >= minimum:
                break
            value.setdefault(name, example_value(sub, root=root, index=index, depth=depth + 1))
    return value


def _array(schema: dict[str, Any], root: Any, depth: int) -> list[Any]:
    prefix = schema.get("prefixItems")
    items = schema.get("items")
    if isinstance(items, list):  # draft 4 tuple form
        prefix, items = items, schema.get("additionalItems", {})
    prefix = prefix if isinstance(prefix, list) else []
    low: int = schema["minItems"] if isinstance(schema.get("minItems"), int) else 0
    high: int | None = schema["maxItems"] if isinstance(schema.get("maxItems"), int) else None
    count = max(low, len(prefix) if prefix else 1)
    if high is not None:
        count = min(count, high)
    value = []
    for i in range(count):
        sub = prefix[i] if i < len(prefix) else (items if items is not None else {})
        value.append(example_value(sub, root=root, index=i, depth=depth + 1))
    return value


def _string(schema: dict[str, Any], index: int) -> str:
    text = _FORMATS.get(str(schema.get("format")), _word(index))
    low = schema.get("minLength")
    high = schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text += "x" * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text


def _number(schema: dict[str, Any], index: int, *, integer: bool) -> int | float:
    """The smallest allowed value from `index` up (within the bounds, a multiple of `multipleOf`)."""
    low: float = index
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    exclusive_min, exclusive_max = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    step = schema.get("multipleOf") if isinstance(schema.get("multipleOf"), (int, float)) else None
    nudge = step or (1 if integer else 0.5)
    if isinstance(minimum, (int, float)):
        low = max(low, minimum + (nudge if exclusive_min is True else 0))  # draft 4: a boolean
    if isinstance(exclusive_min, (int, float)) and not isinstance(exclusive_min, bool):
        low = max(low, exclusive_min + nudge)
    high: float | None = None
    if isinstance(maximum, (int, float)):
        high = maximum - (nudge if exclusive_max is True else 0)
    if isinstance(exclusive_max, (int, float)) and not isinstance(exclusive_max, bool):
        high = exclusive_max - nudge if high is None else min(high, exclusive_max - nudge)
    if high is not None and low > high:
        low = high if not isinstance(minimum, (int, float)) else max(high, minimum)
    if step:
        low = math.ceil(low / step) * step
    if integer:
        low = math.ceil(low)
    return int(low) if float(low).is_integer() else low
