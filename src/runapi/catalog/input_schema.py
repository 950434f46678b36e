"""Each model's typed inputs: a JSON Schema built from its mode and `InputSpec`, and the request check.

The schema is what `/v1/models/{id}`, the model page and SKILL.md publish. `check_request` validates
a decoded request body against it and raises `InvalidRequest` naming the first failing field, so an
endpoint calls it before any hold. Unknown fields are allowed (they pass through to the upstream).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import fastjsonschema
import msgspec

from runapi.errors import InvalidRequest

if TYPE_CHECKING:
    import jsonschema  # type: ignore[import-untyped]  # no stubs pinned; used through two calls

JsonSchema = dict[str, Any]
_encode = msgspec.json.encode


class InputSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What one model accepts beyond its mode's common fields. Empty lists mean "not constrained"."""

    sizes: list[str] = []  # image / video sizes, "WIDTHxHEIGHT"
    qualities: list[str] = []
    max_images: int = 1  # `n` per image request
    durations: list[int] = []  # video seconds
    fps: list[int] = []
    image_input: bool = False  # video from one image (or first and last frames)
    audio: bool = False  # video with generated sound (`with_audio`)
    dimensions: list[int] = []  # embeddings: the accepted `dimensions` values ...
    max_dimensions: int = 0  # ... or any value from 1 to this (0: the parameter is not accepted)
    max_inputs: int = 2048  # strings (or token arrays) per embedding request
    max_prompt_chars: int = 0  # 0: no limit beyond the body size


def _enum_or(values: list[Any], schema: JsonSchema) -> JsonSchema:
    return {**schema, "enum": values} if values else schema


def text_schema(max_output: int) -> JsonSchema:
    """A compact chat schema: the fields every chat request has (the full one is OpenAI's)."""
    return {
        "type": "object", "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role"],
                "properties": {"role": {"enum": ["system", "developer", "user", "assistant", "tool"]}}}},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": max_output},
            "stream": {"type": "boolean"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        },
    }


def embedding_schema(spec: InputSpec) -> JsonSchema:
    text = {"type": "string", "minLength": 1}
    tokens = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
    properties: JsonSchema = {
        "model": {"type": "string"},
        # anyOf, not oneOf: the four forms cannot overlap, and the first match ends the check (the
        # openai SDKs send an array of strings).
        "input": {"anyOf": [
            {"type": "array", "minItems": 1, "maxItems": spec.max_inputs, "items": text},
            text,
            tokens,
            {"type": "array", "minItems": 1, "maxItems": spec.max_inputs, "items": tokens},
        ]},
        "encoding_format": {"enum": ["float", "base64"]},
        "user": {"type": "string"},
    }
    if spec.dimensions:
        properties["dimensions"] = {"type": "integer", "enum": spec.dimensions}
    elif spec.max_dimensions:
        properties["dimensions"] = {"type": "integer", "minimum": 1, "maximum": spec.max_dimensions}
    schema: JsonSchema = {"type": "object", "required": ["model", "input"], "properties": properties}
    if "dimensions" not in properties:
        schema["not"] = {"required": ["dimensions"]}
    return schema


def _prompt(spec: InputSpec) -> JsonSchema:
    prompt: JsonSchema = {"type": "string", "minLength": 1}
    if spec.max_prompt_chars:
        prompt["maxLength"] = spec.max_prompt_chars
    return prompt


def image_schema(spec: InputSpec) -> JsonSchema:
    return {
        "type": "object", "required": ["model", "prompt"],
        "properties": {
            "model": {"type": "string"},
            "prompt": _prompt(spec),
            "n": {"type": "integer", "minimum": 1, "maximum": spec.max_images},
            "size": _enum_or(spec.sizes, {"type": "string"}),
            "quality": _enum_or(spec.qualities, {"type": "string"}),
            "response_format": {"enum": ["url", "b64_json"]},
            "user": {"type": "string"},
        },
    }


def video_schema(spec: InputSpec) -> JsonSchema:
    properties: JsonSchema = {
        "model": {"type": "string"},
        "prompt": _prompt(spec),
        "duration": _enum_or(list(spec.durations), {"type": "integer", "minimum": 1}),
        "size": _enum_or(spec.sizes, {"type": "string"}),
        "quality": _enum_or(spec.qualities, {"type": "string"}),
        "fps": _enum_or(list(spec.fps), {"type": "integer", "minimum": 1}),
    }
    if spec.image_input:
        image = {"type": "string", "minLength": 1}
        properties["image_url"] = {"anyOf": [image, {"type": "array", "minItems": 1, "maxItems": 2, "items": image}]}
    if spec.audio:
        properties["with_audio"] = {"type": "boolean"}
    schema: JsonSchema = {"type": "object", "required": ["model"], "properties": properties}
    schema["anyOf"] = [{"required": ["prompt"]}, {"required": ["image_url"]}] if spec.image_input else [
        {"required": ["prompt"]}]
    return schema


def build_input_schema(mode: str, spec: InputSpec, max_output: int) -> JsonSchema:
    """The JSON Schema (draft 2020-12) of a request to a model of `mode` accepting `spec`."""
    body = {"text": lambda: text_schema(max_output), "embedding": lambda: embedding_schema(spec),
            "image": lambda: image_schema(spec), "video": lambda: video_schema(spec)}[mode]()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **body}


@functools.lru_cache(maxsize=256)
def _validator(schema_json: bytes) -> jsonschema.Draft202012Validator:
    # Imported on the first body that fails the compiled check: 3 MiB a worker keeps otherwise.
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(schema_json))


@functools.lru_cache(maxsize=256)
def _compiled(schema_json: bytes) -> Callable[[Any], Any]:
    """The schema compiled to Python by fastjsonschema: about 1 µs for a valid body against jsonschema's
    50. The schemas use only keywords whose meaning drafts 7 and 2020-12 share (`tests/test_input_schema.py`
    checks the two agree), so it is compiled as draft 7, the newest fastjsonschema knows."""
    schema = {key: value for key, value in json.loads(schema_json).items() if key != "$schema"}
    return fastjsonschema.compile(schema)


def _field(error: jsonschema.ValidationError) -> str:
    """`input[2]`-style path of the failing value (the missing property for a `required` error)."""
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = next((name for name in error.validator_value if name not in error.instance), "")
        path = f"{path}.{missing}" if path else missing
    if error.validator == "anyOf" and not path:
        path = str(error.validator_value[0].get("required", [""])[0])
    if error.validator == "not" and not path:
        path = "dimensions"
    return path


def check_request(schema: JsonSchema, body: Any) -> None:
    """Raise `InvalidRequest` (400, `param` = the field) if `body` breaks `schema`: the compiled check
    passes valid bodies; jsonschema judges the rest and names the field."""
    key = _encode(schema)  # a schema is built the same way each time: its bytes are its key
    try:
        _compiled(key)(body)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    from jsonschema.exceptions import best_match  # type: ignore[import-untyped]

    error = best_match(_validator(key).iter_errors(body))
    if error is None:
        return
    field = _field(error)
    if error.validator == "not":
        message = f"`{field}` is not supported by this model."
    elif error.validator == "required":
        message = f"Missing required parameter: `{field}`."
    elif error.validator == "anyOf" and not error.absolute_path:  # the top level: prompt or image_url
        message = "Provide `prompt`" + (" or `image_url`." if "image_url" in str(error.validator_value) else ".")
    else:
        message = f"Invalid value for `{field or 'body'}`: {error.message}."
    raise InvalidRequest(message, param=field or None, code="invalid_value")
