"""`chat.completion.chunk`s → Responses SSE events (pure, stateful), each with its `sequence_number`.

`start()` sends `response.created` and `response.in_progress`; `feed_payload(chunk)` opens, fills
and closes output items as the chunks arrive (reasoning summary, message text, function call
arguments); `finish(usage, cost)` closes the open item and sends `response.completed` (or
`response.incomplete`); `fail(...)` sends `error` and `response.failed`. `response` is the final
`response` object once finished or failed (for the store).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

from runapi.money import Usage
from runapi.protocols.responses.from_chat import (
    INCOMPLETE_REASONS,
    ResponseContext,
    call_item,
    message_item,
    reasoning_item,
    response_object,
    text_part,
    usage_json,
)
from runapi.protocols.responses.ids import item_id
from runapi.transport import frame

_encode = msgspec.json.Encoder(decimal_format="number").encode


class _ToolCallDelta(msgspec.Struct, gc=False):
    index: int = 0
    id: str | None = None
    function: dict[str, Any] | None = None


class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[_ToolCallDelta] | None = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(msgspec.Struct, gc=False):
    choices: list[_Choice] | None = None


_decode_chunk = msgspec.json.Decoder(_Chunk).decode


class _Call:
    """A tool call being streamed."""

    __slots__ = ("arguments", "call_id", "index", "item", "name")

    def __init__(self, index: int, item: str, call_id: str, name: str) -> None:
        self.index, self.item, self.call_id, self.name = index, item, call_id, name
        self.arguments: list[str] = []


class ChatToResponseEvents:
    """Chat chunks → Responses events for one response (see the module docstring)."""

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.output: list[dict[str, Any]] = []  # the finished items
        self.response: dict[str, Any] | None = None
        self.incomplete_reason: str | None = None
        self._seq = 0
        self._started = False
        self._kind = ""  # the open item: reasoning, message, call
        self._item = ""
        self._texts: list[str] = []
        self._delta_head = b""  # the open text item's delta event, up to its sequence number
        self._calls: dict[int, _Call] = {}  # chat tool call index → call
        self._call: _Call | None = None

    def _event(self, kind: str, payload: dict[str, Any]) -> bytes:
        seq = self._seq
        self._seq += 1
        return frame(_encode({"type": kind, "sequence_number": seq, **payload}), kind)

    def _fast_delta(self, text: str) -> bytes:
        """A text delta event, written directly (the hot part of a stream: one per chunk)."""
        seq = self._seq
        self._seq += 1
        return self._delta_head + b"%d,\"delta\":" % seq + _encode(text) + b"}\n\n"

    def start(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        response = _encode(response_object(self.ctx, "in_progress", [], None))  # once, for both events
        self._seq = 2
        return (b'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":'
                + response + b'}\n\nevent: response.in_progress\ndata: {"type":"response.in_progress",'
                b'"sequence_number":1,"response":' + response + b"}\n\n")

    def feed_payload(self, payload: bytes) -> bytes:
        chunk = _decode_chunk(payload)
        choices = chunk.choices
        if choices and len(choices) == 1 and self._kind == "message":  # the common chunk: more of the answer
            choice = choices[0]
            delta = choice.delta
            if (delta is not None and delta.content and choice.finish_reason is None and not delta.reasoning_content
                    and not delta.tool_calls):
                self._texts.append(delta.content)
                seq = self._seq
                self._seq = seq + 1
                return self._delta_head + b'%d,"delta":' % seq + _encode(delta.content) + b"}\n\n"
        return self._feed(chunk)

    def _feed(self, chunk: _Chunk) -> bytes:
        out = b"" if self._started else self.start()
        for choice in chunk.choices or ():
            delta = choice.delta
            if delta is not None:
                if delta.reasoning_content:
                    if self._kind != "reasoning":
                        out += self._open_text("reasoning")
                    self._texts.append(delta.reasoning_content)
                    out += self._fast_delta(delta.reasoning_content)
                if delta.content:
                    if self._kind != "message":
                        out += self._open_text("message")
                    self._texts.append(delta.content)
                    out += self._fast_delta(delta.content)
                for call in delta.tool_calls or ():
                    out += self._tool_delta(call)
            if choice.finish_reason in INCOMPLETE_REASONS:
                self.incomplete_reason = INCOMPLETE_REASONS[choice.finish_reason]
        return out

    def _open_text(self, kind: str) -> bytes:
        out = self._close()
        index = len(self.output)
        self._kind, self._texts = kind, []
        if kind == "reasoning":
            self._item = item_id("rs", self.ctx.id, index)
            out += self._event("response.output_item.added", {"output_index": index, "item": {
                "id": self._item, "type": "reasoning", "summary": []}})
            out += self._event("response.reasoning_summary_part.added", {
                "item_id": self._item, "output_index": index, "summary_index": 0,
                "part": {"type": "summary_text", "text": ""}})
            name = b"response.reasoning_summary_text.delta"
            fields = b'"summary_index":0'
        else:
            self._item = item_id("msg", self.ctx.id, index)
            out += self._event("response.output_item.added", {"output_index": index, "item": {
                "id": self._item, "type": "message", "status": "in_progress", "role": "assistant", "content": []}})
            out += self._event("response.content_part.added", {
                "item_id": self._item, "output_index": index, "content_index": 0, "part": text_part("")})
            name = b"response.output_text.delta"
            fields = b'"content_index":0,"logprobs":[]'
        self._delta_head = (b"event: " + name + b'\ndata: {"type":"' + name + b'","item_id":"' + self._item.encode()
                            + b'","output_index":%d,' % index + fields + b',"sequence_number":')
        return out

    def _tool_delta(self, delta: _ToolCallDelta) -> bytes:
        out = b""
        function = delta.function or {}
        call = self._calls.get(delta.index)
        if call is None:
            out += self._close()
            index = len(self.output)
            name = str(function.get("name") or "")
            call = _Call(index, item_id("ctc" if name in self.ctx.custom_tools else "fc", self.ctx.id, index),
                         delta.id or "", name)
            self._calls[delta.index] = call
            self._kind, self._call = "call", call
            item = call_item(call.item, call.call_id, call.name, "", self.ctx, "in_progress")
            if item["type"] == "custom_tool_call":
                item["input"] = ""
            out += self._event("response.output_item.added", {"output_index": index, "item": item})
        arguments = function.get("arguments")
        if arguments:
            call.arguments.append(str(arguments))
            if call.name not in self.ctx.custom_tools:  # a custom tool's input is sent whole, once decoded
                out += self._event("response.function_call_arguments.delta", {
                    "item_id": call.item, "output_index": call.index, "delta": str(arguments)})
        return out

    def _close(self) -> bytes:
        """Close the open item: its `.done` events, then `response.output_item.done`."""
        kind, index = self._kind, len(self.output)
        self._kind = ""
        if kind == "reasoning":
            text = "".join(self._texts)
            item = reasoning_item(self._item, text)
            out = self._event("response.reasoning_summary_text.done", {
                "item_id": self._item, "output_index": index, "summary_index": 0, "text": text})
            out += self._event("response.reasoning_summary_part.done", {
                "item_id": self._item, "output_index": index, "summary_index": 0, "part": item["summary"][0]})
        elif kind == "message":
            text = "".join(self._texts)
            item = message_item(self._item, text, "incomplete" if self.incomplete_reason else "completed")
            out = self._event("response.output_text.done", {
                "item_id": self._item, "output_index": index, "content_index": 0, "text": text, "logprobs": []})
            out += self._event("response.content_part.done", {
                "item_id": self._item, "output_index": index, "content_index": 0, "part": item["content"][0]})
        elif kind == "call" and self._call is not None:
            call = self._call
            item = call_item(call.item, call.call_id, call.name, "".join(call.arguments), self.ctx)
            if item["type"] == "custom_tool_call":
                out = self._event("response.custom_tool_call_input.delta", {
                    "item_id": call.item, "output_index": index, "delta": item["input"]})
                out += self._event("response.custom_tool_call_input.done", {
                    "item_id": call.item, "output_index": index, "input": item["input"]})
            else:
                out = self._event("response.function_call_arguments.done", {
                    "item_id": call.item, "output_index": index, "name": call.name, "arguments": item["arguments"]})
        else:
            return b""
        self.output.append(item)
        return out + self._event("response.output_item.done", {"output_index": index, "item": item})

    def finish(self, usage: Usage, cost: Decimal, completed_at: int) -> bytes:
        """Close the open item; `response.completed` (or `.incomplete`) with the usage and its cost."""
        out = self.start() + self._close()
        if not self.output:  # an empty answer is still one (empty) message, as in a JSON response
            out += self._open_text("message") + self._close()
        status = "incomplete" if self.incomplete_reason else "completed"
        self.response = response_object(self.ctx, status, self.output, usage_json(usage, cost),
                                        incomplete_reason=self.incomplete_reason,
                                        completed_at=completed_at if status == "completed" else None)
        return out + self._event(f"response.{status}", {"response": self.response})

    def fail(self, code: str, message: str) -> bytes:
        """`error` (with the gateway's error `code`), then `response.failed` (no usage: a failed response is
        not charged) whose `error.code` is one of OpenAI's: `rate_limit_exceeded` or `server_error`."""
        out = self.start()
        error = {"code": "rate_limit_exceeded" if "rate_limit" in code else "server_error", "message": message}
        out += self._event("error", {"code": code, "message": message, "param": None})
        self.response = response_object(self.ctx, "failed", self.output, None, error=error)
        return out + self._event("response.failed", {"response": self.response})
