"""Anthropic Messages streams, event by event (pure, stateful; no I/O).

- `MessagesToChatStream`: Messages SSE events → OpenAI `chat.completion.chunk` payloads.
- `NativeStreamMeter`: usage and output pieces of a Messages stream relayed as is.

Malformed or error events raise `UpstreamError`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from runapi.errors import UpstreamError
from runapi.money import Usage
from runapi.providers.anthropic_translate import (
    STOP_REASONS,
    messages_usage,
    openai_usage,
)
from runapi.providers.base import UpstreamChunk

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def upstream_error_message(data: bytes) -> str:
    """The message of an Anthropic `error` event or error body, if any."""
    try:
        error = _decode(data).get("error")
    except (msgspec.DecodeError, AttributeError):
        return ""
    return str(error.get("message", ""))[:500] if isinstance(error, dict) else ""


class MessagesToChatStream:
    """Anthropic stream events → OpenAI `chat.completion.chunk` payloads (pure, stateful).

    Feed every event in order; `done` turns true at `message_stop`. Usage (from
    `message_start`, completed by `message_delta`) travels on a final usage-only chunk.
    """

    def __init__(self, created: int) -> None:
        self.created = created
        self.id = ""
        self.model = ""
        self.done = False
        self._usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # content block index → OpenAI tool call index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, parts: int = 0) -> UpstreamChunk:
        payload = _encode({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model,
                           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})
        return UpstreamChunk(payload=payload, content_parts=parts, upstream_id=self.id)

    def feed(self, event: str, data: bytes) -> list[UpstreamChunk]:
        """The chunks for one event (often none). Raises `UpstreamError` on an error event."""
        if event == "error":
            message = upstream_error_message(data) or "unknown error"
            raise UpstreamError(f"the upstream reported an error mid-stream: {message}")
        if event in ("ping", "content_block_stop", ""):
            return []
        try:
            message = _decode(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError("the upstream sent a malformed stream event") from exc
        kind = message.get("type", event) if isinstance(message, dict) else None
        if kind == "message_start":
            start = message.get("message") or {}
            self.id, self.model = str(start.get("id", "")), str(start.get("model", ""))
            self._usage.update(start.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(message)
        if kind == "content_block_delta":
            return self._block_delta(message)
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (message.get("usage") or {}).items() if v is not None})
            stop = (message.get("delta") or {}).get("stop_reason")
            usage = messages_usage(self._usage) or Usage()
            payload = _encode({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": [], "usage": openai_usage(usage)})
            return [self._chunk({}, STOP_REASONS.get(str(stop), "stop")),
                    UpstreamChunk(payload=payload, usage=usage, usage_only=True, upstream_id=self.id)]
        if kind == "message_stop":
            self.done = True
        return []

    def _block_start(self, message: dict[str, Any]) -> list[UpstreamChunk]:
        block = message.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = self._tool_index[int(message.get("index", 0))] = len(self._tool_index)
            arguments = _encode(block["input"]).decode() if block.get("input") else ""
            call = {"index": index, "id": block.get("id", ""), "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": arguments}}
            return [self._chunk({"tool_calls": [call]}, parts=1 if arguments else 0)]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]}, parts=1)]
        return []

    def _block_delta(self, message: dict[str, Any]) -> list[UpstreamChunk]:
        delta = message.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]}, parts=1)]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]}, parts=1)]
        if kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_index.get(int(message.get("index", 0)), 0)
            call = {"index": index, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]}, parts=1)]
        return []  # signature and citation deltas have no OpenAI counterpart


class NativeStreamMeter:
    """Usage and output pieces of an Anthropic stream relayed as is (pure, stateful)."""

    def __init__(self) -> None:
        self._usage: dict[str, Any] = {}

    def feed(self, event: str, data: bytes) -> tuple[Usage | None, int]:
        """(usage, once final at `message_delta`; content pieces in this event)."""
        if event == "content_block_delta":
            return None, 1
        if event not in ("message_start", "message_delta"):
            return None, 0
        try:
            message = _decode(data)
        except msgspec.DecodeError as exc:
            raise UpstreamError("the upstream sent a malformed stream event") from exc
        if event == "message_start":
            self._usage.update((message.get("message") or {}).get("usage") or {})
            return None, 0
        self._usage.update({k: v for k, v in (message.get("usage") or {}).items() if v is not None})
        return messages_usage(self._usage) or Usage(), 0
