"""Chat-completions answers → Anthropic Messages answers (pure functions), for `/v1/messages` on
OpenAI-protocol upstreams.

- `to_message(chat_reply)`: a `chat.completion` → a Messages `message`.
- `ChatToMessagesEvents`: `chat.completion.chunk`s → Messages SSE events.
- `messages_usage_json(usage, cost)`: usage in Anthropic's semantics, where `input_tokens`
  excludes cache reads and writes (OpenAI's `prompt_tokens` includes them), plus `cost`.
- `error_event(type, message)`: a Messages `error` SSE event.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from runapi.money import Usage
from runapi.providers.sse import frame

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use",
                "content_filter": "refusal"}
"""OpenAI `finish_reason` → Anthropic `stop_reason`."""

_encode = msgspec.json.Encoder(decimal_format="number").encode


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


class _ToolCallDelta(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: dict[str, Any] | None = None


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


def _delta_prefix(index: int, kind: bytes, field: bytes) -> bytes:
    return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":'
            % (index, kind, field))


def _delta_event(index: int, kind: bytes, field: bytes, value: str) -> bytes:
    """A `content_block_delta` event, written directly (the hot part of a stream: one per chunk)."""
    return _delta_prefix(index, kind, field) + _encode(value) + _DELTA_END


_DELTA_END = b"}}\n\n"
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class ChatToMessagesEvents:
    """`chat.completion.chunk`s → Messages SSE events (pure, stateful).

    `feed_payload` each chunk's JSON (or `feed` a decoded one); `finish(usage, cost)` closes the
    open block and sends `message_delta` (stop reason, full usage) and `message_stop`.
    """

    def __init__(self, message_id: str, model: str) -> None:
        self.message_id = message_id
        self.model = model
        self.stop_reason = "end_turn"
        self._started = False
        self._block = -1  # index of the open content block
        self._kind = ""  # its type: text, thinking or tool_use
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool call index → block index
        self._prefix = b""  # the open text or thinking block's delta event, up to its value

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
        if kind == "text":
            self._prefix = _delta_prefix(self._block, b"text_delta", b"text")
        elif kind == "thinking":
            self._prefix = _delta_prefix(self._block, b"thinking_delta", b"thinking")
        return out + self._event("content_block_start", {"index": self._block, "content_block": block})

    def _close(self) -> bytes:
        if not self._kind:
            return b""
        self._kind = ""
        return self._event("content_block_stop", {"index": self._block})

    def feed(self, chunk: dict[str, Any]) -> bytes:
        return self._feed(msgspec.convert(chunk, _Chunk))

    def feed_payload(self, payload: bytes) -> bytes:
        return self._feed(_decode_chunk(payload))

    def _feed(self, chunk: _Chunk) -> bytes:
        out = b"" if self._started else self.start()
        for choice in chunk.choices or ():
            delta = choice.delta
            if delta is not None:
                if delta.reasoning_content:
                    if self._kind != "thinking":
                        out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
                    out += self._prefix + _encode(delta.reasoning_content) + _DELTA_END
                if delta.content:
                    if self._kind != "text":
                        out += self._open("text", {"type": "text", "text": ""})
                    out += self._prefix + _encode(delta.content) + _DELTA_END
                for call in delta.tool_calls or ():
                    out += self._tool_delta(call)
            if choice.finish_reason:
                self.stop_reason = STOP_REASONS.get(choice.finish_reason, "end_turn")
        return out

    def _tool_delta(self, call: _ToolCallDelta) -> bytes:
        out = b""
        function = call.function or {}
        if call.index not in self._tool_blocks:
            out += self._open("tool_use", {"type": "tool_use", "id": call.id or "",
                                           "name": function.get("name", ""), "input": {}})
            self._tool_blocks[call.index] = self._block
        if function.get("arguments"):
            out += _delta_event(self._tool_blocks[call.index], b"input_json_delta", b"partial_json",
                                str(function["arguments"]))
        return out

    def finish(self, usage: Usage, cost: Decimal) -> bytes:
        out = self.start() + self._close()
        out += self._event("message_delta", {"delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                                             "usage": messages_usage_json(usage, cost)})
        return out + _MESSAGE_STOP
