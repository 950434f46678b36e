"""Inbound Anthropic Messages ↔ the gateway's chat-completions shape (pure functions).

- `decode_messages_request(body)`: validate a `/v1/messages` body (typed view + the raw dict).
- `to_chat_request(raw)`: a Messages body → a chat-completions body for OpenAI-protocol upstreams.
- `to_message(chat_reply)`: a `chat.completion` → a Messages `message`.
- `ChatToMessagesEvents`: `chat.completion.chunk`s → Messages SSE events.
- `messages_usage_json(usage, cost)`: usage in Anthropic's semantics, where `input_tokens`
  excludes cache reads and writes (OpenAI's `prompt_tokens` includes them), plus `cost`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from runapi.accounting.money import Usage
from runapi.errors import InvalidRequest
from runapi.pipeline.chat_request import decode_typed_body
from runapi.providers.sse import frame

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
"""OpenAI `finish_reason` → Anthropic `stop_reason`."""

# Messages fields translated below, or dropped for OpenAI-protocol upstreams (no equivalent there).
# Any other field is the client's extra and passes through unchanged.
_HANDLED = frozenset({"model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature", "top_p",
                      "top_k", "tools", "tool_choice", "metadata", "thinking", "service_tier", "container",
                      "mcp_servers", "context_management"})

_encode = msgspec.json.Encoder(decimal_format="number").encode


class InboundMessage(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(msgspec.Struct):
    """The typed view of a `/v1/messages` body (content blocks are checked while translating)."""

    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[InboundMessage], Meta(min_length=1)]
    max_tokens: Annotated[int, Meta(ge=1)]
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = False
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None


class CountTokensRequest(msgspec.Struct):
    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[InboundMessage], Meta(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


def decode_messages_request(body: bytes, type_: type[Any] = MessagesRequest) -> tuple[Any, dict[str, Any]]:
    """Validate a Messages body as `type_`. Raises `InvalidRequest` naming the bad field. A whole-number
    float `max_tokens` (`100.0`, an integer in JSON Schema's terms) is read, and passed on, as an integer."""
    return decode_typed_body(body, type_, whole_numbers=("max_tokens",))


# -- request --------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of a string or of text blocks (system prompts, tool results)."""
    if isinstance(content, str):
        return content
    return "\n".join(str(block.get("text", "")) for block in content or () if isinstance(block, dict)
                     and block.get("type") == "text")


def _source(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    return source if isinstance(source, dict) else {}


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _source(block)
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise InvalidRequest("Images need a base64 or url source.", param=f"{path}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _source(block)
    if source.get("type") == "text":
        return {"type": "text", "text": str(source.get("data", ""))}
    if source.get("type") == "base64":
        data = f"data:{source.get('media_type', 'application/pdf')};base64,{source.get('data', '')}"
        return {"type": "file", "file": {"file_data": data, "filename": str(block.get("title") or "document.pdf")}}
    raise InvalidRequest("Documents need a base64 or text source for this model.", param=f"{path}.source")


def _user_turn(content: Any, path: str) -> list[dict[str, Any]]:
    """One user turn → tool messages (its tool results, first) and then one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where, kind = f"{path}[{j}]", block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append(_image_part(block, where))
        elif kind == "document":
            parts.append(_document_part(block, where))
        elif kind == "tool_result":
            text = _text_of(block.get("content"))
            tool_messages.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
                                  "content": f"Error: {text}" if block.get("is_error") else text})
        else:
            raise InvalidRequest(f"Content blocks of type {kind!r} are not supported by this model.", param=where)
    if not parts:
        return tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tool_messages, {"role": "user", "content": parts[0]["text"]}]
    return [*tool_messages, {"role": "user", "content": parts}]


def _assistant_turn(content: Any, path: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            arguments = _encode(block.get("input") or {}).decode()
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")), "arguments": arguments}})
        elif kind != "redacted_thinking":
            raise InvalidRequest(f"Content blocks of type {kind!r} are not supported by this model.",
                                 param=f"{path}[{j}]")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type") not in (None, "custom") or not isinstance(tool.get("name"), str):
            raise InvalidRequest("Only client tools (name, description, input_schema) are supported by this model.",
                                 param=f"tools[{i}]")
        function: dict[str, Any] = {"name": tool["name"],
                                    "parameters": tool.get("input_schema") or {"type": "object", "properties": {}}}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool]:
    """(OpenAI tool_choice, parallel tool calls allowed)."""
    kind = choice.get("type")
    mapped: Any = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if kind == "tool":
        mapped = {"type": "function", "function": {"name": choice.get("name")}}
    if mapped is None:
        raise InvalidRequest(f"Unsupported tool_choice type {kind!r}.", param="tool_choice.type")
    return mapped, not choice.get("disable_parallel_tool_use")


def to_chat_request(raw: dict[str, Any]) -> dict[str, Any]:
    """A Messages body → a chat-completions body (for OpenAI-protocol upstreams)."""
    messages: list[dict[str, Any]] = []
    system = raw.get("system")
    if system:
        messages.append({"role": "system", "content": _text_of(system)})
    for i, message in enumerate(raw.get("messages") or ()):
        path = f"messages[{i}].content"
        if message.get("role") == "assistant":
            messages.append(_assistant_turn(message.get("content"), path))
        else:
            messages.extend(_user_turn(message.get("content"), path))
    chat: dict[str, Any] = {"model": raw.get("model"), "messages": messages, "max_tokens": raw.get("max_tokens")}
    for field in ("temperature", "top_p", "stream"):
        if raw.get(field) is not None:
            chat[field] = raw[field]
    if raw.get("stop_sequences"):
        chat["stop"] = raw["stop_sequences"]
    if raw.get("tools"):
        chat["tools"] = _tools(raw["tools"])
    if isinstance(raw.get("tool_choice"), dict) and raw.get("tools"):
        chat["tool_choice"], parallel = _tool_choice(raw["tool_choice"])
        if not parallel:
            chat["parallel_tool_calls"] = False
    metadata = raw.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    thinking = raw.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "disabled"):
        chat["thinking"] = {"type": thinking["type"]}  # GLM's switch; budgets have no OpenAI equivalent
    for key, value in raw.items():
        if key not in _HANDLED:
            chat[key] = value
    return chat


# -- answers ----------------------------------------------------------------------------------------


def messages_usage_json(usage: Usage, cost: Decimal) -> dict[str, Any]:
    """Anthropic's usage object (input excludes cache reads and writes), plus `cost` in USD."""
    return {"input_tokens": usage.input_tokens, "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens, "output_tokens": usage.output_tokens, "cost": cost}


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(arguments or "{}")
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def to_message(reply: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` → a Messages `message` (usage is the caller's to fill)."""
    choice = (reply.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        content.append({"type": "thinking", "thinking": message["reasoning_content"], "signature": ""})
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id", ""), "name": function.get("name", ""),
                        "input": _tool_input(function.get("arguments", ""))})
    return {"id": reply.get("id", ""), "type": "message", "role": "assistant", "model": reply.get("model", ""),
            "content": content, "stop_reason": STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn"),
            "stop_sequence": None}


def error_event(error_type: str, message: str) -> bytes:
    """A Messages `error` SSE event."""
    return frame(_encode({"type": "error", "error": {"type": error_type, "message": message}}), "error")


class ChatToMessagesEvents:
    """`chat.completion.chunk`s → Messages SSE events (pure, stateful).

    `feed` each decoded chunk; `finish(usage, cost)` closes the open block and sends
    `message_delta` (stop reason, full usage) and `message_stop`.
    """

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.stop_reason = "end_turn"
        self._started = False
        self._block = -1  # index of the open content block
        self._kind = ""  # its type: text, thinking or tool_use
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index → block index

    def _event(self, name: str, payload: dict[str, Any]) -> bytes:
        return frame(_encode({"type": name, **payload}), name)

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {"id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 0, "output_tokens": 0}}
        return self._event("message_start", {"message": message})

    def _open(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._block += 1
        self._kind = kind
        return out + self._event("content_block_start", {"index": self._block, "content_block": block})

    def _close(self) -> bytes:
        if not self._kind:
            return b""
        self._kind = ""
        return self._event("content_block_stop", {"index": self._block})

    def feed(self, chunk: dict[str, Any]) -> bytes:
        out = self.start()
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                if self._kind != "thinking":
                    out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                out += self._event("content_block_delta", {"index": self._block, "delta": {
                    "type": "thinking_delta", "thinking": delta["reasoning_content"]}})
            if delta.get("content"):
                if self._kind != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out += self._event("content_block_delta", {"index": self._block, "delta": {
                    "type": "text_delta", "text": delta["content"]}})
            for call in delta.get("tool_calls") or ():
                out += self._tool_delta(call)
            if choice.get("finish_reason"):
                self.stop_reason = STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _tool_delta(self, call: dict[str, Any]) -> bytes:
        out = b""
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        if index not in self._tool_blocks:
            out += self._open("tool_use", {"type": "tool_use", "id": call.get("id", ""),
                                           "name": function.get("name", ""), "input": {}})
            self._tool_blocks[index] = self._block
        if function.get("arguments"):
            out += self._event("content_block_delta", {"index": self._tool_blocks[index], "delta": {
                "type": "input_json_delta", "partial_json": function["arguments"]}})
        return out

    def finish(self, usage: Usage, cost: Decimal) -> bytes:
        out = self.start() + self._close()
        out += self._event("message_delta", {"delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                                             "usage": messages_usage_json(usage, cost)})
        return out + self._event("message_stop", {})
