"""The typed view of a `POST /v1/responses` body: what the gateway validates and reads.

Fields the gateway does not know are kept in the raw dict and passed through to the chat upstream
(as chat completions does), so simulator knobs and provider extras still work. Input items are
checked item by item in `to_chat`, which names the bad one (`input[2].content[0].type`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from runapi.protocols.openai import decode_typed_body

PositiveInt = Annotated[int, Meta(ge=1)]
Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class TextFormat(msgspec.Struct):
    type: Literal["text", "json_schema", "json_object"] = "text"
    name: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class TextConfig(msgspec.Struct):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(msgspec.Struct):
    effort: Effort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(msgspec.Struct):
    """A Responses request. Accepted and passed on or ignored, never refused as unknown: `user`,
    `prompt_cache_key`, `safety_identifier`, `include`, `service_tier`, `truncation`, `background`."""

    model: Annotated[str, Meta(min_length=1)]
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    max_output_tokens: PositiveInt | None = None
    parallel_tool_calls: bool | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    stream: bool | None = False
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    truncation: str | None = None
    background: bool | None = None

    @property
    def stored(self) -> bool:
        """`store` defaults to true, as at OpenAI."""
        return self.store is not False


def decode_responses_request(body: bytes) -> tuple[ResponsesRequest, dict[str, Any]]:
    """Validate a Responses body: (typed view, raw dict). Raises `InvalidRequest` naming the bad field."""
    return decode_typed_body(body, ResponsesRequest, whole_numbers=("max_output_tokens",))


_NO_TEXT = TextConfig()


def echo_params(request: ResponsesRequest) -> dict[str, Any]:
    """The request's parameters as the `response` object repeats them (OpenAI's defaults where unset)."""
    text = request.text or _NO_TEXT
    fmt = ({k: v for k, v in msgspec.to_builtins(text.format).items() if v is not None} if text.format
           else {"type": "text"})
    reasoning = request.reasoning
    return {
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "reasoning": {"effort": reasoning.effort if reasoning else None,
                      "summary": (reasoning.summary or reasoning.generate_summary) if reasoning else None},
        "service_tier": request.service_tier or "default",
        "store": request.stored,
        "temperature": request.temperature if request.temperature is not None else 1.0,
        "text": {"format": fmt, "verbosity": text.verbosity or "medium"},
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": request.tools or [],
        "top_p": request.top_p if request.top_p is not None else 1.0,
        "truncation": request.truncation or "disabled",
        "user": request.user,
        "prompt_cache_key": request.prompt_cache_key,
        "safety_identifier": request.safety_identifier,
    }
