"""OpenAI chat completions wire format (JSON and SSE), as the development simulator speaks it."""

from __future__ import annotations

import secrets
import time
from typing import Any

import msgspec

from .config import SimulatorConfig
from .generation import Call, OutputFormat, Reply, StreamScript
from .script import assistant_turns
from .tokens import chunk_texts, prompt_tokens

__all__ = ["MODELS_BODY", "OpenAIChat"]

_encode = msgspec.json.Encoder().encode

MODELS_BODY = _encode(
    {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "runapi-simulator"}
            for name in ("glm-4.5-air", "glm-4.5", "glm-4.6", "glm-4.7")
        ],
    }
)
"""`GET /v1/models` answer (the simulator serves any model name)."""

_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    404: ("invalid_request_error", "unknown_url"),
    405: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
}


class _StreamOptions(msgspec.Struct):
    include_usage: bool | None = None


class _ChatRequest(msgspec.Struct, kw_only=True):
    messages: list[dict[str, Any]]
    model: str = ""
    stream: bool | None = None
    stream_options: _StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


def _tool_schemas(tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    """name → parameters schema of each function tool."""
    schemas: dict[str, Any] = {}
    for tool in tools or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            schemas[function["name"]] = function.get("parameters")
    return schemas


def _output_format(response_format: dict[str, Any] | None) -> OutputFormat | None:
    kind = (response_format or {}).get("type")
    if kind == "json_object":
        return OutputFormat(kind="json_object")
    if kind == "json_schema":
        spec = (response_format or {}).get("json_schema")
        return OutputFormat(kind="json_schema", schema=spec.get("schema") if isinstance(spec, dict) else None)
    return None


def _chosen_tool(request: _ChatRequest) -> str | None:
    """The tool to call: the named or first tool, when tools are on and the user spoke last."""
    if not request.tools or request.tool_choice == "none":
        return None
    if not request.messages or request.messages[-1].get("role") != "user":
        return None
    choice = request.tool_choice
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if isinstance(name, str):
            return name
    first = request.tools[0]
    function = first.get("function")
    name = function.get("name") if isinstance(function, dict) else first.get("name")
    return name if isinstance(name, str) else None


def _usage(reply: Reply, config: SimulatorConfig) -> dict[str, Any]:
    completion = reply.completion_tokens
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": reply.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": min(config.cached_tokens, reply.prompt_tokens)},
        "completion_tokens_details": {"reasoning_tokens": len(reply.reasoning)},
    }


def _finish_reason(reply: Reply) -> str:
    if reply.tool_calls:
        return "tool_calls"
    return "length" if reply.truncated else "stop"


class OpenAIChat:
    """`POST /v1/chat/completions`: OpenAI JSON, SSE chunks, usage and error shapes."""

    malformed_json = b'{"id": "chatcmpl-sim", "object": "chat.completion", "choices": [{"index": 0, "message": {"'

    def parse(self, raw: dict[str, Any]) -> Call:
        request = msgspec.convert(raw, _ChatRequest)
        caps = [cap for cap in (request.max_tokens, request.max_completion_tokens) if cap is not None]
        options = request.stream_options
        return Call(
            model=request.model,
            stream=bool(request.stream),
            prompt_tokens=prompt_tokens(request.messages),
            max_tokens=min(caps) if caps else None,
            tool=_chosen_tool(request),
            include_usage=bool(options and options.include_usage),
            tools=_tool_schemas(request.tools),
            output_format=_output_format(request.response_format),
            assistant_turns=assistant_turns(request.messages),
        )

    def completion(self, reply: Reply, call: Call, config: SimulatorConfig) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.reasoning:
            message["reasoning_content"] = reply.reasoning_text
        if reply.tool_calls:
            message["content"] = reply.text or None
            message["tool_calls"] = [
                {"id": _tool_call_id(), "type": "function", "function": {"name": plan.name, "arguments": plan.arguments}}
                for plan in reply.tool_calls
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(reply)}
        return _encode(
            {
                "id": _completion_id(),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.model,
                "choices": [choice],
                "usage": _usage(reply, config),
            }
        )

    def stream(self, reply: Reply, call: Call, config: SimulatorConfig) -> StreamScript:
        include_usage = call.include_usage and config.honour_include_usage
        head = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,"choices":[' % (
            _completion_id().encode(),
            int(time.time()),
            _encode(call.model),
        )
        tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"

        def chunk(delta: bytes, finish: bytes = b"null") -> bytes:
            return head + b'{"index":0,"delta":' + delta + b',"logprobs":null,"finish_reason":' + finish + b"}]" + tail

        script = StreamScript(
            malformed=head + b'{"index":0,"delta":{"content":"\n\n',
            error=b"data: " + self.error(500, "The server had an error while processing your request.") + b"\n\n",
        )
        script.add(chunk(b'{"role":"assistant","content":""}'))
        for text in chunk_texts(reply.reasoning, config.chunks):
            script.add(chunk(b'{"reasoning_content":' + _encode(text) + b"}"), paced=True)
        answer_start = len(script.frames)
        for text in chunk_texts(reply.words, config.chunks):
            script.add(chunk(b'{"content":' + _encode(text) + b"}"), paced=True)
        for index, plan in enumerate(reply.tool_calls):
            function = {"name": plan.name, "arguments": ""}
            opening = {"index": index, "id": _tool_call_id(), "type": "function", "function": function}
            script.add(chunk(_encode({"tool_calls": [opening]})), paced=True)
            for fragment in plan.fragments():
                delta = b'{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}' % (index, _encode(fragment))
                script.add(chunk(delta), paced=True)
        script.midpoint = answer_start + (len(script.frames) - answer_start + 1) // 2
        script.add(chunk(b"{}", b'"%s"' % _finish_reason(reply).encode()))
        if include_usage:
            script.add(head + b'],"usage":' + _encode(_usage(reply, config)) + b"}\n\n")
        script.add(b"data: [DONE]\n\n")
        return script

    def error(self, status: int, message: str) -> bytes:
        kind, code = _ERRORS.get(status, ("server_error", None))
        return _encode({"error": {"message": message, "type": kind, "param": None, "code": code}})


def _completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def _tool_call_id() -> str:
    return "call_" + secrets.token_hex(12)
