"""Tables for the pure translations between OpenAI chat completions and Anthropic Messages."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from runapi.errors import InvalidRequest, UpstreamError
from runapi.money import Usage
from runapi.protocols.anthropic.inbound import to_chat_request
from runapi.protocols.anthropic.outbound import (
    from_messages_reply,
    messages_usage,
    to_messages_request,
)
from runapi.protocols.anthropic.replies import ChatToMessagesEvents, to_message
from runapi.protocols.anthropic.stream import MessagesToChatStream, NativeStreamMeter
from runapi.transport.sse import parse_sse_event

USER = {"role": "user", "content": "hi"}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def outbound(**chat: Any) -> dict[str, Any]:
    return to_messages_request({"model": "claude-x", "messages": [USER], **chat}, "claude-x-2025", 64000)


@pytest.mark.parametrize(("chat", "expected"), [
    # defaults: the upstream name, max_tokens from the model's max output, content as blocks
    ({}, {"model": "claude-x-2025", "max_tokens": 64000, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]}]}),
    # max_completion_tokens wins, capped at the model's max output
    ({"max_completion_tokens": 10, "max_tokens": 20}, {"max_tokens": 10}),
    ({"max_tokens": 10**6}, {"max_tokens": 64000}),
    # stop → stop_sequences; temperature capped to Anthropic's 0..1; user → metadata
    ({"stop": "END"}, {"stop_sequences": ["END"]}),
    ({"stop": ["a", "b"], "temperature": 1.7, "top_p": 0.5, "user": "u-1"},
     {"stop_sequences": ["a", "b"], "temperature": 1.0, "top_p": 0.5, "metadata": {"user_id": "u-1"}}),
    # tools and every tool_choice
    ({"tools": [TOOL]}, {"tools": [{"name": "get_weather", "description": "Weather now", "input_schema":
                                    TOOL["function"]["parameters"]}]}),  # type: ignore[index]
    ({"tools": [TOOL], "tool_choice": "auto"}, {"tool_choice": {"type": "auto"}}),
    ({"tools": [TOOL], "tool_choice": "required"}, {"tool_choice": {"type": "any"}}),
    ({"tools": [TOOL], "tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
     {"tool_choice": {"type": "tool", "name": "get_weather"}}),
    ({"tools": [TOOL], "parallel_tool_calls": False}, {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
    # thinking: GLM/Anthropic style or OpenAI reasoning_effort; temperature is dropped when on
    ({"thinking": {"type": "enabled"}, "max_tokens": 8000, "temperature": 0.2},
     {"thinking": {"type": "enabled", "budget_tokens": 4000}}),
    ({"reasoning_effort": "high", "max_tokens": 8000}, {"thinking": {"type": "enabled", "budget_tokens": 7999}}),
    ({"thinking": {"type": "disabled"}}, {"thinking": {"type": "disabled"}}),
    # OpenAI-only fields are dropped; the client's other extras pass through
    ({"seed": 1, "logprobs": True, "stream_options": {"include_usage": True}, "top_k": 5, "x_sim": {"a": 1}},
     {"top_k": 5, "x_sim": {"a": 1}}),
    ({"stream": True}, {"stream": True}),
])
def test_request_fields(chat: dict[str, Any], expected: dict[str, Any]) -> None:
    body = outbound(**chat)
    assert {key: body.get(key) for key in expected} == expected
    assert not {"seed", "logprobs", "stream_options", "n", "user", "max_completion_tokens"} & set(body)
    if chat.get("thinking", {}).get("type") == "enabled":
        assert "temperature" not in body


def test_conversation_with_system_tools_and_images() -> None:
    chat = [
        {"role": "system", "content": "Be terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
        {"role": "user", "content": "Thanks"},
    ]
    body = to_messages_request({"model": "m", "messages": chat}, "up", 100)
    assert body["system"] == "Be terse.\n\nUse metric units."
    assert body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        ]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ]},
        # the tool result and the next user turn merge into one user turn, result first
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "12 C"},
            {"type": "text", "text": "Thanks"},
        ]},
    ]


def test_cache_control_is_kept_on_system_and_parts() -> None:
    marker = {"type": "ephemeral"}
    body = to_messages_request({"model": "m", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "long", "cache_control": marker}]},
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": marker}]},
    ]}, "up", 100)
    assert body["system"] == [{"type": "text", "text": "long", "cache_control": marker}]
    assert body["messages"][0]["content"][0]["cache_control"] == marker


@pytest.mark.parametrize(("chat", "param"), [
    ({"n": 2}, "n"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]},
     "messages[0].content[0]"),
    ({"tools": [{"type": "web_search"}]}, "tools[0]"),
])
def test_untranslatable_requests_are_400_naming_the_field(chat: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_messages_request({"model": "m", "messages": [USER], **chat}, "up", 100)
    assert caught.value.param == param


@pytest.mark.parametrize(("stop_reason", "finish_reason"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("pause_turn", "stop"), ("something_new", "stop"),
])
def test_reply_stop_reasons(stop_reason: str, finish_reason: str) -> None:
    reply, _ = from_messages_reply({"id": "msg_1", "type": "message", "content": [], "stop_reason": stop_reason}, 7)
    assert reply["choices"][0]["finish_reason"] == finish_reason


def test_reply_with_thinking_text_and_tool_use() -> None:
    reply, usage = from_messages_reply({
        "id": "msg_1", "type": "message", "model": "claude-x-2025", "stop_reason": "tool_use",
        "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
        "usage": {"input_tokens": 3, "output_tokens": 9, "cache_read_input_tokens": 4,
                  "cache_creation_input_tokens": 5},
    }, created=7)
    assert reply["choices"][0]["message"] == {
        "role": "assistant", "content": "Checking.", "reasoning_content": "hmm",
        "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}
    # Anthropic's input_tokens exclude cache reads and writes; OpenAI's prompt_tokens include them.
    assert usage == Usage(input_tokens=3, output_tokens=9, cache_read_tokens=4, cache_write_tokens=5)
    assert reply["usage"]["prompt_tokens"] == 12 and reply["usage"]["prompt_tokens_details"]["cached_tokens"] == 4


def _events(*pairs: tuple[str, dict[str, Any]]) -> list[tuple[str, bytes]]:
    return [(name, msgspec.json.encode(data)) for name, data in pairs]


STREAM = _events(
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "claude-x-2025", "usage": {
        "input_tokens": 3, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 5, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": '{"a":'}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": " 1}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
    ("message_stop", {"type": "message_stop"}),
)


def test_stream_events_become_chat_chunks() -> None:
    translator = MessagesToChatStream(created=7)
    chunks = [chunk for name, data in STREAM for chunk in translator.feed(name, data)]
    assert translator.done
    deltas = [msgspec.json.decode(c.payload)["choices"] for c in chunks]
    assert deltas[0][0]["delta"] == {"role": "assistant", "content": ""}
    assert deltas[1][0]["delta"] == {"content": "Hi"} and chunks[1].content_parts == 1
    assert deltas[2][0]["delta"]["tool_calls"][0] == {
        "index": 0, "id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": ""}}
    arguments = "".join(d[0]["delta"]["tool_calls"][0]["function"]["arguments"] for d in deltas[3:5])
    assert arguments == '{"a": 1}'
    assert deltas[5][0]["finish_reason"] == "tool_calls"
    usage_chunk = chunks[-1]
    assert usage_chunk.usage_only and deltas[-1] == []
    assert usage_chunk.usage == Usage(input_tokens=3, output_tokens=9, cache_read_tokens=4, cache_write_tokens=5)
    assert {c.upstream_id for c in chunks} == {"msg_1"}


def test_stream_error_event_raises() -> None:
    with pytest.raises(UpstreamError, match="Overloaded"):
        MessagesToChatStream(created=7).feed("error", b'{"type":"error","error":{"type":"overloaded_error",'
                                                      b'"message":"Overloaded"}}')


def test_native_meter_reads_usage_from_start_and_delta() -> None:
    meter = NativeStreamMeter()
    results = [meter.feed(name, data) for name, data in STREAM]
    assert sum(parts for _, parts in results) == 3
    assert results[-2][0] == Usage(input_tokens=3, output_tokens=9, cache_read_tokens=4, cache_write_tokens=5)
    assert messages_usage({"input_tokens": "x"}) is None


# -- inbound: Messages clients in front of OpenAI-protocol upstreams ------------------------------------


def test_inbound_messages_become_chat() -> None:
    chat = to_chat_request({
        "model": "glm-4.5-air", "max_tokens": 50, "system": [{"type": "text", "text": "Be terse."}],
        "stop_sequences": ["END"], "temperature": 0.3, "top_k": 4, "metadata": {"user_id": "u-1"}, "x_sim": {"a": 1},
        "thinking": {"type": "enabled", "budget_tokens": 2000},
        "tools": [{"name": "f", "description": "F", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                      "data": "AAA"}}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                              {"type": "text", "text": "ok"},
                                              {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"},
                                         {"type": "text", "text": "and?"}]},
        ],
    })
    assert chat == {
        "model": "glm-4.5-air", "max_tokens": 50, "temperature": 0.3, "stop": ["END"], "user": "u-1",
        "x_sim": {"a": 1}, "thinking": {"type": "enabled"}, "tool_choice": "required", "parallel_tool_calls": False,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "description": "F"}}],
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
            {"role": "assistant", "content": "ok", "reasoning_content": "hm", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "done"},
            {"role": "user", "content": "and?"},
        ],
    }


@pytest.mark.parametrize(("content", "param"), [
    ([{"type": "server_tool_use", "id": "x"}], "messages[0].content[0]"),
    ([{"type": "image", "source": {"type": "file", "file_id": "f"}}], "messages[0].content[0].source"),
])
def test_inbound_untranslatable_blocks_are_400(content: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat_request({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": content}]})
    assert caught.value.param == param


def test_chat_reply_becomes_a_message() -> None:
    message = to_message({"id": "gen-1", "model": "glm-4.5-air", "choices": [{"finish_reason": "tool_calls", "message": {
        "content": "Checking.", "reasoning_content": "hm",
        "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}}]}}]})
    assert message["content"] == [{"type": "thinking", "thinking": "hm", "signature": ""},
                                  {"type": "text", "text": "Checking."},
                                  {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}]
    assert message["stop_reason"] == "tool_use" and message["type"] == "message"


def test_chat_chunks_become_message_events() -> None:
    writer = ChatToMessagesEvents("gen-1", "glm-4.5-air")
    out = b"".join([
        writer.feed({"choices": [{"delta": {"role": "assistant", "content": ""}}]}),
        writer.feed({"choices": [{"delta": {"reasoning_content": "hm"}}]}),
        writer.feed({"choices": [{"delta": {"content": "Hi"}}]}),
        writer.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {
            "name": "f", "arguments": ""}}]}}]}),
        writer.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}}]}),
        writer.feed({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
        writer.finish(Usage(input_tokens=2, output_tokens=5, cache_read_tokens=3), Decimal("0.001")),
    ])
    events = [parse_sse_event(block) for block in out.split(b"\n\n") if block]
    names = [e.event for e in events if e]
    assert names == ["message_start",
                     "content_block_start", "content_block_delta", "content_block_stop",  # thinking
                     "content_block_start", "content_block_delta", "content_block_stop",  # text
                     "content_block_start", "content_block_delta", "content_block_stop",  # tool_use
                     "message_delta", "message_stop"]
    data = [msgspec.json.decode(e.data) for e in events if e]
    assert [d["index"] for d in data if d["type"] == "content_block_start"] == [0, 1, 2]
    assert data[-2]["delta"]["stop_reason"] == "tool_use"
    assert data[-2]["usage"] == {"input_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 3,
                                 "output_tokens": 5, "cost": 0.001}


def test_thinking_is_left_off_a_tool_continuation_that_has_no_signed_thinking() -> None:
    """Anthropic refuses thinking when the assistant turn being continued called tools without a signed thinking
    block first, and a chat history (or a Responses one translated to chat) never carries one: such a call goes
    without thinking; the next turn, once the tool loop is over, has it again (CODEX-WIRE.md, Codex on Claude)."""
    loop = [{"role": "user", "content": "Run it."},
            {"role": "assistant", "content": None, "reasoning_content": "unsigned", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    assert "thinking" not in outbound(messages=loop, tools=[TOOL], reasoning_effort="high", max_tokens=8000)
    done = [*loop, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "And tomorrow?"}]
    assert outbound(messages=done, tools=[TOOL], reasoning_effort="high", max_tokens=8000)["thinking"]["type"] == "enabled"
    assert outbound(messages=loop, tools=[TOOL], thinking={"type": "disabled"})["thinking"] == {"type": "disabled"}
