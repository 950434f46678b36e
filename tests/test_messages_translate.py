"""Tables for what `/v1/messages` accepts today (Claude Code 2.1, the anthropic SDK 2.x): every request
field translated or dropped for OpenAI-protocol upstreams, system messages folded, and errors in
Anthropic's words."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from anthropic.types.beta.message_create_params import (
    MessageCreateParamsBase as BetaMessageCreateParams,
)
from anthropic.types.message_create_params import (
    MessageCreateParamsBase,
    MessageCreateParamsStreaming,
)

from runapi.errors import (
    AuthError,
    BudgetExceeded,
    GatewayError,
    InsufficientCredit,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from runapi.protocols.anthropic.errors import anthropic_error, error_type
from runapi.protocols.anthropic.inbound import _HANDLED, to_chat_request
from runapi.protocols.anthropic.outbound import fold_system_messages

HI = {"role": "user", "content": "hi"}
TOOL = {"name": "Read", "description": "Read a file", "input_schema": {
    "type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}
READ = {"type": "function", "function": {"name": "Read", "parameters": TOOL["input_schema"], "description": "Read a file"}}


def chat(**fields: Any) -> dict[str, Any]:
    return to_chat_request({"model": "glm-4.6", "max_tokens": 50, "messages": [HI], **fields})


def test_every_sdk_request_field_is_translated_or_dropped() -> None:
    fields = set(MessageCreateParamsBase.__annotations__) | set(MessageCreateParamsStreaming.__annotations__)
    fields |= set(BetaMessageCreateParams.__annotations__)
    assert fields <= _HANDLED, fields - _HANDLED  # a new SDK field must be decided on, not sent to OpenAI upstreams


def test_system_messages_anywhere_are_folded_into_the_system_prompt() -> None:
    body = to_chat_request({"model": "glm-4.6", "max_tokens": 50, "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [HI, {"role": "system", "content": "# Environment\ncwd: /tmp"},
                     {"role": "assistant", "content": "ok"},
                     {"role": "user", "content": "next"},
                     {"role": "system", "content": [{"type": "text", "text": "reminder"}]}]})
    assert body["messages"] == [
        {"role": "system", "content": "You are Claude Code.\n\n# Environment\ncwd: /tmp\n\nreminder"},
        HI, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "next"}]
    assert to_chat_request({"model": "m", "max_tokens": 5, "messages": [HI, {"role": "system", "content": "x"}]})[
        "messages"] == [{"role": "system", "content": "x"}, HI]


@pytest.mark.parametrize(("fields", "expected"), [
    # thinking: GLM's switch for an explicit ask; adaptive is GLM's default, so nothing is sent
    ({"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "omitted"}}, {"thinking": {"type": "enabled"}}),
    ({"thinking": {"type": "disabled"}}, {"thinking": {"type": "disabled"}}),
    ({"thinking": {"type": "adaptive", "display": "summarized"}}, {"thinking": None}),
    ({"thinking": {"type": "between_tools"}}, {"thinking": None}),
    # output_config: a JSON schema becomes response_format; effort has no OpenAI-protocol equivalent
    ({"output_config": {"effort": "xhigh", "format": {"type": "json_schema", "schema": {"type": "object"}}}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "object"},
                                                                 "strict": True}}, "reasoning_effort": None}),
    ({"output_config": {"effort": "medium"}}, {"response_format": None}),
    ({"output_format": {"type": "json_schema", "schema": {"type": "array"}}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": {"type": "array"},
                                                                 "strict": True}}}),
    # metadata.user_id → user; Claude Code's long JSON id is sent as its SHA-256
    ({"metadata": {"user_id": "u-1"}}, {"user": "u-1"}),
    ({"metadata": {"user_id": '{"device_id":"' + "a" * 64 + '"}'}},
     {"user": hashlib.sha256(('{"device_id":"' + "a" * 64 + '"}').encode()).hexdigest()}),
    ({"metadata": {"user_id": None}}, {"user": None}),
    # tool_choice, every variant
    ({"tools": [TOOL], "tool_choice": {"type": "auto"}}, {"tool_choice": "auto", "parallel_tool_calls": None}),
    ({"tools": [TOOL], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
     {"tool_choice": "required", "parallel_tool_calls": False}),
    ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "Read"}},
     {"tool_choice": {"type": "function", "function": {"name": "Read"}}}),
    ({"tools": [TOOL, {"type": "web_search_20250305", "name": "web_search"}],
      "tool_choice": {"type": "tool", "name": "web_search"}}, {"tool_choice": "required", "tools": [READ]}),
    ({"tools": [TOOL], "tool_choice": {"type": "none"}}, {"tool_choice": "none"}),
    ({"tool_choice": {"type": "any"}}, {"tool_choice": None, "tools": None}),  # no tools: no choice
    # tools: client tools become functions (cache marks, strict, defer_loading dropped); server tools left out
    ({"tools": [{**TOOL, "cache_control": {"type": "ephemeral", "ttl": "5m"}, "strict": True, "defer_loading": True}]},
     {"tools": [READ]}),
    ({"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}, {"type": "code_execution_20250825",
                                                                       "name": "code_execution"}]}, {"tools": None}),
    ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, {"tools": [{"type": "function", "function": {
        "name": "bash", "parameters": {"type": "object", "properties": {"command": {"type": "string"},
                                                                          "restart": {"type": "boolean"}}}}}]}),
    # dropped: no equivalent on OpenAI-protocol upstreams; the client's own extras pass through
    ({"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
      "service_tier": "standard_only", "container": "c-1", "mcp_servers": [{"type": "url", "url": "https://x"}],
      "cache_control": {"type": "ephemeral", "ttl": "1h"}, "diagnostics": {"previous_message_id": None},
      "inference_geo": "us", "speed": "fast", "top_k": 5, "user_profile_id": "p", "workspace_id": "w",
      "x_sim": {"chunks": 2}, "do_sample": False},
     {"context_management": None, "service_tier": None, "container": None, "mcp_servers": None, "cache_control": None,
      "diagnostics": None, "inference_geo": None, "speed": None, "top_k": None, "user_profile_id": None,
      "workspace_id": None, "x_sim": {"chunks": 2}, "do_sample": False}),
    ({"stop_sequences": ["END"], "temperature": 0.5, "top_p": 0.9, "stream": True},
     {"stop": ["END"], "temperature": 0.5, "top_p": 0.9, "stream": True}),
])
def test_request_fields_on_the_translated_path(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    body = chat(**fields)
    assert {key: body.get(key) for key in expected} == expected


def test_text_editor_and_memory_tools_get_anthropics_schemas() -> None:
    tools = chat(tools=[{"type": "text_editor_20250728", "name": "str_replace_based_edit_tool", "max_characters": 10},
                        {"type": "memory_20250818", "name": "memory"}])["tools"]
    assert [tool["function"]["name"] for tool in tools] == ["str_replace_based_edit_tool", "memory"]
    editor = tools[0]["function"]["parameters"]
    assert editor["required"] == ["command", "path"] and "str_replace" in editor["properties"]["command"]["enum"]


IMAGE = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}
IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}


@pytest.mark.parametrize(("content", "expected"), [
    # cache_control (with ttl) on blocks is dropped, the text kept
    ([{"type": "text", "text": "a", "cache_control": {"type": "ephemeral", "ttl": "1h"}}], [HI | {"content": "a"}]),
    ([{"type": "image", "source": {"type": "url", "url": "https://x/p.png"}}, {"type": "text", "text": "what?"}],
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/p.png"}},
                                   {"type": "text", "text": "what?"}]}]),
    ([{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "body"}, "title": "T"}],
     [{"role": "user", "content": "T\n\nbody"}]),
    ([{"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": "c1"}]}}],
     [{"role": "user", "content": "c1"}]),
    ([{"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}],
     [{"role": "user", "content": "Document: https://x/a.pdf"}]),
    ([{"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}],
     [{"role": "user", "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE",
                                                             "filename": "document.pdf"}}]}]),
    ([{"type": "search_result", "source": "https://x", "title": "T", "content": [{"type": "text", "text": "f"}],
       "citations": {"enabled": True}}], [{"role": "user", "content": "T\nhttps://x\n\nf"}]),
    ([{"type": "container_upload", "file_id": "f"}, {"type": "text", "text": "go"}], [{"role": "user", "content": "go"}]),
    # a tool result with an image: the tool message carries the text, the image follows in a user message
    ([{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "shot:"}, IMAGE]}],
     [{"role": "tool", "tool_call_id": "t1", "content": "shot:\n(1 attachment(s) follow in the next message)"},
      {"role": "user", "content": [IMAGE_PART]}]),
    ([{"type": "tool_result", "tool_use_id": "t1", "content": "no such file", "is_error": True},
      {"type": "tool_result", "tool_use_id": "t2"}],
     [{"role": "tool", "tool_call_id": "t1", "content": "Error: no such file"},
      {"role": "tool", "tool_call_id": "t2", "content": ""}]),
])
def test_user_blocks(content: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert to_chat_request({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]})[
        "messages"] == expected


def test_assistant_blocks_without_a_chat_form_are_dropped() -> None:
    content = [{"type": "redacted_thinking", "data": "x"}, {"type": "compaction", "content": "Summary. "},
               {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}},
               {"type": "web_search_tool_result", "tool_use_id": "s1", "content": []},
               {"type": "text", "text": "Found it."},
               {"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "/a"}}]
    (message,) = to_chat_request({"model": "m", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": content}]})["messages"]
    assert message == {"role": "assistant", "content": "Summary. Found it.", "tool_calls": [
        {"id": "t1", "type": "function", "function": {"name": "Read", "arguments": '{"file_path":"/a"}'}}]}


@pytest.mark.parametrize(("body", "expected"), [
    ({"messages": [HI]}, {"messages": [HI]}),
    ({"system": "S", "messages": [HI, {"role": "system", "content": "env"}]},
     {"system": [{"type": "text", "text": "S"}, {"type": "text", "text": "env"}], "messages": [HI]}),
    ({"system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}],
      "messages": [HI, {"role": "system", "content": [{"type": "text", "text": "e"}]}, {"role": "assistant",
                                                                                        "content": "a"}]},
     {"system": [{"type": "text", "text": "S", "cache_control": {"type": "ephemeral"}}, {"type": "text", "text": "e"}],
      "messages": [HI, {"role": "assistant", "content": "a"}]}),
])
def test_native_fold_of_system_messages(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert fold_system_messages(body) == expected


@pytest.mark.parametrize(("error", "model", "expected"), [
    (NotFound("The model `x` does not exist.", param="model", code="model_not_found"), "claude-0",
     (404, "not_found_error", "model: claude-0")),
    (NotFound("No task 'x'.", code="task_not_found"), None, (404, "not_found_error", "No task 'x'.")),
    (AuthError("bad key"), None, (401, "authentication_error", "bad key")),
    (InvalidRequest("bad"), None, (400, "invalid_request_error", "bad")),
    (PayloadTooLarge("big"), None, (413, "request_too_large", "big")),
    (RateLimited("slow down", retry_after=1), None, (429, "rate_limit_error", "slow down")),
    (InsufficientCredit("Needs $1."), None, (402, "billing_error", "Your credit balance is too low for this call. "
                                                                   "Needs $1.")),
    (BudgetExceeded("Cap reached."), None, (402, "billing_error", "Cap reached.")),
    (UpstreamUnavailable("all down"), None, (529, "overloaded_error", "all down")),
    (UpstreamTimeout("slow"), None, (504, "timeout_error", "slow")),
    (UpstreamError("broken"), None, (502, "api_error", "broken")),
    (UpstreamRejected("This model's maximum context length is 128000 tokens", upstream_status=400), None,
     (400, "invalid_request_error", "prompt is too long: This model's maximum context length is 128000 tokens")),
    (UpstreamRejected("prompt is too long: 210000 tokens > 200000 maximum", upstream_status=400), None,
     (400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")),
    (UpstreamRejected("bad tool schema", upstream_status=422), None, (422, "invalid_request_error", "bad tool schema")),
])
def test_errors_in_anthropics_words(error: GatewayError, model: str | None, expected: tuple[int, str, str]) -> None:
    assert anthropic_error(error, error.status, error.message, model) == expected


def test_stream_error_types() -> None:
    assert error_type(UpstreamUnavailable("x")) == "overloaded_error" and error_type(UpstreamError("x")) == "api_error"
    assert error_type(RuntimeError("x")) == "api_error"
