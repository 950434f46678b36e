"""A `chat.completion` → Responses output items, and the `response` object around them (pure).

Reasoning (`reasoning_content`) becomes a `reasoning` item with its text as the summary; the answer
a `message` item with one `output_text` part; each tool call a `function_call` item, or a
`custom_tool_call` item for a `custom` tool (its `input` is the function's one argument). A reply cut
by the token limit is `incomplete` with `incomplete_details.reason = "max_output_tokens"`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from runapi.money import Usage
from runapi.protocols.responses.ids import item_id
from runapi.protocols.responses.tools import CUSTOM_INPUT

INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}
"""Chat `finish_reason`s that leave a response incomplete → `incomplete_details.reason`."""


class ResponseContext(msgspec.Struct):
    """What every output of one response shares: its ID, when it was made, the public model, the echoed
    request parameters (`echo_params`), the names of its custom tools and its namespaced functions' namespaces."""

    id: str
    created_at: int
    model: str
    params: dict[str, Any]
    custom_tools: frozenset[str] = frozenset()
    namespaces: dict[str, str] = {}


def usage_json(usage: Usage, cost: Decimal) -> dict[str, Any]:
    """Responses usage (`input_tokens` counts cached tokens too, as OpenAI's does), plus `cost` in USD."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cache_read_tokens,
                                 "cache_write_tokens": usage.cache_write_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.output_tokens,
        "cost": cost,
    }


def message_item(item: str, text: str, status: str) -> dict[str, Any]:
    return {"id": item, "type": "message", "status": status, "role": "assistant",
            "content": [text_part(text)]}


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def reasoning_item(item: str, text: str) -> dict[str, Any]:
    return {"id": item, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]}


def call_item(item: str, call_id: str, name: str, arguments: str, ctx: ResponseContext,
              status: str = "completed") -> dict[str, Any]:
    """A `function_call` item, or a `custom_tool_call` item when `name` is a custom tool; with its `namespace`
    when the function came from a namespace tool."""
    out = _call_item(item, call_id, name, arguments, ctx.custom_tools, status)
    if name in ctx.namespaces:
        out["namespace"] = ctx.namespaces[name]
    return out


def _call_item(item: str, call_id: str, name: str, arguments: str, custom: frozenset[str],
               status: str) -> dict[str, Any]:
    if name in custom:
        try:
            value = msgspec.json.decode(arguments or "{}")
        except msgspec.DecodeError:
            value = None
        text = value.get(CUSTOM_INPUT) if isinstance(value, dict) else None
        return {"id": item, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": name,
                "input": text if isinstance(text, str) else arguments}
    return {"id": item, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def output_items(reply: dict[str, Any], ctx: ResponseContext) -> tuple[list[dict[str, Any]], str | None]:
    """(the output items, the incomplete reason or None) of a `chat.completion`."""
    choice = (reply.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    reason = INCOMPLETE_REASONS.get(str(choice.get("finish_reason")))
    items: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        items.append(reasoning_item(item_id("rs", ctx.id, len(items)), str(message["reasoning_content"])))
    if message.get("content") or (not message.get("tool_calls") and not items):
        items.append(message_item(item_id("msg", ctx.id, len(items)), str(message.get("content") or ""),
                                  "incomplete" if reason else "completed"))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        kind = "ctc" if function.get("name") in ctx.custom_tools else "fc"
        items.append(call_item(item_id(kind, ctx.id, len(items)), str(call.get("id") or ""),
                               str(function.get("name") or ""), str(function.get("arguments") or ""), ctx))
    return items, reason


def response_object(ctx: ResponseContext, status: str, output: list[dict[str, Any]],
                    usage: dict[str, Any] | None, *, incomplete_reason: str | None = None,
                    error: dict[str, Any] | None = None, completed_at: int | None = None) -> dict[str, Any]:
    """The `response` object, as OpenAI's: status, output, usage (with `cost`) and the echoed parameters."""
    return {
        "id": ctx.id, "object": "response", "created_at": ctx.created_at, "status": status,
        "background": False, "completed_at": completed_at, "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "model": ctx.model, "output": output, **ctx.params, "usage": usage,
    }
