"""Anthropic Messages wire format (JSON and named SSE events), as the development simulator speaks it."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from .config import SimulatorConfig
from .generation import Call, OutputFormat, Reply, StreamScript
from .script import assistant_turns
from .tokens import cache_split, chunk_texts, prompt_tokens

__all__ = ["AnthropicMessages", "count_tokens_body"]

_encode = msgspec.json.Encoder().encode
_SIGNATURE = "c2ltdWxhdGVkIHRoaW5raW5n"  # base64 "simulated thinking"
_PING = b'event: ping\ndata: {"type":"ping"}\n\n'
_MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'

_ERRORS = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class _MessagesRequest(msgspec.Struct, kw_only=True):
    messages: list[dict[str, Any]]
    max_tokens: int
    model: str = ""
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    output_format: dict[str, Any] | None = None  # the structured-outputs beta's spelling


class _CountTokensRequest(msgspec.Struct, kw_only=True):
    messages: list[dict[str, Any]]
    system: str | list[dict[str, Any]] | None = None


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(part, dict) and part.get("type") == "tool_result" for part in content
    )


def _chosen_tool(request: _MessagesRequest) -> str | None:
    """The tool to call: the named or first tool, when tools are on and the user (not a tool result) spoke last."""
    choice = request.tool_choice or {}
    if not request.tools or choice.get("type") == "none" or not request.messages:
        return None
    last = request.messages[-1]
    if last.get("role") != "user" or _has_tool_result(last.get("content")):
        return None
    if choice.get("type") == "tool" and isinstance(choice.get("name"), str):
        return str(choice["name"])
    name = request.tools[0].get("name")
    return name if isinstance(name, str) else None


def _tool_schemas(tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    """name → input schema of each tool (server tools have none)."""
    return {tool["name"]: tool.get("input_schema") for tool in tools or ()
            if isinstance(tool, dict) and isinstance(tool.get("name"), str)}


def _output_format(request: _MessagesRequest) -> OutputFormat | None:
    spec = (request.output_config or {}).get("format") or request.output_format
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        return OutputFormat(kind="json_schema", schema=spec.get("schema"))
    return None


def _usage(reply: Reply, config: SimulatorConfig) -> dict[str, int]:
    """Anthropic usage: `input_tokens` excludes cache reads and writes."""
    read, write = cache_split(reply.prompt_tokens, config.cached_tokens, config.cache_creation_tokens)
    return {
        "input_tokens": reply.prompt_tokens - read - write,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": reply.completion_tokens,
    }


def _stop_reason(reply: Reply) -> str:
    if reply.tool_calls:
        return "tool_use"
    return "max_tokens" if reply.truncated else "end_turn"


def _event(name: bytes, payload: bytes) -> bytes:
    return b"event: " + name + b"\ndata: " + payload + b"\n\n"


def _delta(index: int, kind: bytes, field: bytes, value: str) -> bytes:
    return _event(
        b"content_block_delta",
        b'{"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":%s}}'
        % (index, kind, field, _encode(value)),
    )


class AnthropicMessages:
    """`POST /v1/messages`: Anthropic JSON, the SSE event sequence, usage and error shapes."""

    malformed_json = b'{"id": "msg_sim", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "'

    def parse(self, raw: dict[str, Any]) -> Call:
        request = msgspec.convert(raw, _MessagesRequest)
        return Call(
            model=request.model,
            stream=bool(request.stream),
            prompt_tokens=prompt_tokens(request.messages, request.system),
            max_tokens=request.max_tokens,
            tool=_chosen_tool(request),
            tools=_tool_schemas(request.tools),
            output_format=_output_format(request),
            assistant_turns=assistant_turns(request.messages),
        )

    def completion(self, reply: Reply, call: Call, config: SimulatorConfig) -> bytes:
        content: list[dict[str, Any]] = []
        if reply.reasoning:
            content.append({"type": "thinking", "thinking": reply.reasoning_text, "signature": _SIGNATURE})
        if reply.words or not reply.tool_calls:
            content.append({"type": "text", "text": reply.text})
        for plan in reply.tool_calls:
            content.append({"type": "tool_use", "id": _tool_use_id(), "name": plan.name,
                            "input": msgspec.json.decode(plan.arguments)})
        return _encode(
            {
                "id": _message_id(),
                "type": "message",
                "role": "assistant",
                "model": call.model,
                "content": content,
                "stop_reason": _stop_reason(reply),
                "stop_sequence": None,
                "usage": _usage(reply, config),
            }
        )

    def stream(self, reply: Reply, call: Call, config: SimulatorConfig) -> StreamScript:
        usage = _usage(reply, config)
        message: dict[str, Any] = {
            "id": _message_id(),
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        script = StreamScript(
            malformed=b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"\n\n',
            error=_event(b"error", self.error(529, "Overloaded")),
        )
        script.add(_event(b"message_start", _encode({"type": "message_start", "message": message})))
        index = 0

        def open_block(block: dict[str, Any]) -> None:
            payload = {"type": "content_block_start", "index": index, "content_block": block}
            script.add(_event(b"content_block_start", _encode(payload)))
            if index == 0:
                script.add(_PING)

        def close_block() -> None:
            script.add(_event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index))

        if reply.reasoning:
            open_block({"type": "thinking", "thinking": ""})
            for text in chunk_texts(reply.reasoning, config.chunks):
                script.add(_delta(index, b"thinking_delta", b"thinking", text), paced=True)
            script.add(_delta(index, b"signature_delta", b"signature", _SIGNATURE))
            close_block()
            index += 1
        # The answer's blocks: (content_block_start payload, delta type, delta field, streamed parts).
        blocks: list[tuple[dict[str, Any], bytes, bytes, list[str]]] = []
        if reply.words or not reply.tool_calls:
            blocks.append(({"type": "text", "text": ""}, b"text_delta", b"text", chunk_texts(reply.words, config.chunks)))
        for plan in reply.tool_calls:
            block = {"type": "tool_use", "id": _tool_use_id(), "name": plan.name, "input": {}}
            blocks.append((block, b"input_json_delta", b"partial_json", plan.fragments()))
        half = (sum(len(parts) for *_, parts in blocks) + 1) // 2
        sent = 0
        script.midpoint = len(script.frames)
        for block, kind, field, parts in blocks:
            open_block(block)
            for part in parts:
                script.add(_delta(index, kind, field, part), paced=True)
                sent += 1
                if sent == half:
                    script.midpoint = len(script.frames)
            close_block()
            index += 1
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
        script.add(_event(b"message_delta", _encode(delta)))
        script.add(_MESSAGE_STOP)
        return script

    def error(self, status: int, message: str) -> bytes:
        kind = _ERRORS.get(status, "api_error")
        return _encode({"type": "error", "error": {"type": kind, "message": message}})


def count_tokens_body(raw: dict[str, Any]) -> bytes:
    """`POST /v1/messages/count_tokens` answer; raises `msgspec.ValidationError` when invalid."""
    request = msgspec.convert(raw, _CountTokensRequest)
    return _encode({"input_tokens": prompt_tokens(request.messages, request.system)})


def _message_id() -> str:
    return "msg_" + secrets.token_hex(12)


def _tool_use_id() -> str:
    return "toolu_" + secrets.token_hex(12)
