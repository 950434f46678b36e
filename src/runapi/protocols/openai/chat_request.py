"""The typed view of a chat-completions request: what the gateway validates and reads.

The client's body is also kept as a plain dict so that every field, known or not,
passes through to OpenAI-compatible upstreams untouched.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from runapi.errors import InvalidRequest

T = TypeVar("T")


class TextPart(msgspec.Struct, tag_field="type", tag="text"):
    text: str


class ImagePart(msgspec.Struct, tag_field="type", tag="image_url"):
    image_url: dict[str, Any]


class AudioPart(msgspec.Struct, tag_field="type", tag="input_audio"):
    input_audio: dict[str, Any]


class FilePart(msgspec.Struct, tag_field="type", tag="file"):
    file: dict[str, Any]


class RefusalPart(msgspec.Struct, tag_field="type", tag="refusal"):
    refusal: str


ContentPart = TextPart | ImagePart | AudioPart | FilePart | RefusalPart


class ToolCallFunction(msgspec.Struct):
    name: str
    arguments: str = ""


class ToolCall(msgspec.Struct):
    id: str
    function: ToolCallFunction
    type: str = "function"


class Message(msgspec.Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


PositiveInt = Annotated[int, Meta(ge=1)]


class ChatRequest(msgspec.Struct):
    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[Message], Meta(min_length=1)]
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: Annotated[int, Meta(ge=1, le=16)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    tools: list[dict[str, Any]] | None = None
    functions: list[dict[str, Any]] | None = None  # the legacy form of `tools`
    response_format: dict[str, Any] | None = None  # a JSON schema here is read as part of the prompt

    @property
    def wants_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def output_limit(self, model_max: int) -> int:
        """The most output tokens this call may produce, across all `n` choices."""
        limit = self.max_completion_tokens or self.max_tokens or model_max
        return min(limit, model_max) * (self.n or 1)


_decode_raw = msgspec.json.Decoder(dict[str, Any]).decode


def decode_typed_body(body: bytes, type_: type[T], whole_numbers: tuple[str, ...] = ()) -> tuple[T, dict[str, Any]]:
    """A JSON request body as `type_` and as the plain dict passed through. Raises `InvalidRequest` naming
    the bad field. Parsed once; the typed view is converted from the dict (a 32 KB prompt: 11 µs against
    22 µs for a second parse), with the same validation and messages as a typed parse. Top-level
    `whole_numbers` fields holding a float with no fraction (`100.0`) become integers first."""
    try:
        raw = _decode_raw(body)
        for name in whole_numbers:
            value = raw.get(name)
            if type(value) is float and value.is_integer():
                raw[name] = int(value)
        request = msgspec.convert(raw, type_)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rpartition(" - at `")[2].rstrip("`") if " - at `" in message else None
        raise InvalidRequest(f"Invalid request body: {message}", param=path) from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, nesting too deep
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    return request, raw


class _ModelOnly(msgspec.Struct):
    """The one field read before a model's own input schema applies (embeddings, images)."""

    model: str = ""


def decode_model_body(body: bytes) -> tuple[str, dict[str, Any]]:
    """The model ID and the whole body of a request whose other fields the model's input schema checks
    (400 if it is not a JSON object with a `model`)."""
    request, raw = decode_typed_body(body, _ModelOnly)
    if not request.model:
        raise InvalidRequest("Missing required parameter: `model`.", param="model")
    return request.model, raw


# Integer fields that may arrive as whole floats (`100.0`): JSON Schema counts those as integers, and so
# does OpenAI (it refuses only a fraction, `100.5`). They are passed on, and read, as integers.
_WHOLE_NUMBER_FIELDS = ("max_tokens", "max_completion_tokens", "n")


def decode_chat_request(body: bytes) -> tuple[ChatRequest, dict[str, Any]]:
    """Validate a chat-completions body. Raises `InvalidRequest` naming the bad field."""
    return decode_typed_body(body, ChatRequest, whole_numbers=_WHOLE_NUMBER_FIELDS)


def prompt_bytes(request: ChatRequest) -> int:
    """UTF-8 bytes of the prompt's text (messages, tool calls and tool definitions)."""
    total = 0
    for message in request.messages:
        content = message.content
        if isinstance(content, str):
            total += len(content.encode())
        elif content:
            for part in content:
                if isinstance(part, TextPart):
                    total += len(part.text.encode())
                else:
                    total += 3000  # an image, audio clip or file: a generous flat estimate
        for call in message.tool_calls or ():
            total += len(call.function.arguments.encode()) + len(call.function.name)
        total += 12  # role and message framing
    if request.tools:
        total += len(msgspec.json.encode(request.tools))
    return total
