"""The Responses translation, as tables: request → chat body, chat reply → output items, chat chunks → events."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from runapi.errors import InvalidRequest
from runapi.money import Usage
from runapi.protocols.responses import (
    ChatToResponseEvents,
    ResponseContext,
    decode_responses_request,
    echo_params,
    generation_of,
    item_response,
    number_input_items,
    output_items,
    response_id,
    to_chat,
)
from runapi.protocols.responses.ids import item_id


def chat(body: dict[str, Any], **options: Any) -> dict[str, Any]:
    request, raw = decode_responses_request(msgspec.json.encode({"model": "m", **body}))
    return to_chat(request, raw, **options).body


USER = {"role": "user", "content": "hi"}


@pytest.mark.parametrize(("body", "expected"), [
    ({"input": "hi"}, [USER]),  # one text part is sent as plain content, which every chat upstream takes
    ({"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}, [USER]),
    ({"input": [USER], "instructions": "Be brief."}, [{"role": "system", "content": "Be brief."}, USER]),
    ({"input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "a"},
                                                                     {"type": "input_text", "text": "b"}]}, USER]},
     [{"role": "system", "content": "ab"}, USER]),
    ({"input": [USER, {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"a\":1}"},
                {"type": "function_call_output", "call_id": "c1", "output": "one"},
                {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]}]},
     [USER, {"role": "assistant", "content": "Looking.", "tool_calls": [
         {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
         {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{\"a\":1}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "one"}, {"role": "tool", "tool_call_id": "c2", "content": "two"}]),
    ({"input": [USER, {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Hmm."}]},
                {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** Begin"}]},
     [USER, {"role": "assistant", "content": None, "reasoning_content": "Hmm.", "tool_calls": [
         {"id": "c1", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"*** Begin\"}"}}]}]),
    ({"input": [USER, {"type": "reasoning", "summary": [], "encrypted_content": "opaque"}]}, [USER]),
    ({"input": [{"role": "user", "content": [
        {"type": "input_text", "text": "see"}, {"type": "input_image", "image_url": "data:image/png;base64,AA", "detail": "low"},
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,AA"}]}]},
     [{"role": "user", "content": [{"type": "text", "text": "see"},
                                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA", "detail": "low"}},
                                   {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA",
                                                             "filename": "a.pdf"}}]}]),
])
def test_input_items_become_chat_messages(body: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    assert chat(body)["messages"] == expected


def test_history_and_references_come_before_the_new_input() -> None:
    request, raw = decode_responses_request(b'{"model": "m", "input": [{"type": "item_reference", "id": "msg_x_0"}]}')
    history: list[dict[str, Any]] = [USER, {"id": "msg_old_0", "type": "message", "role": "assistant", "status": "completed",
                      "content": [{"type": "output_text", "text": "Hello.", "annotations": []}]}]
    referenced = {"msg_x_0": {"type": "message", "role": "user", "content": "again"}}
    body = to_chat(request, raw, history=history, referenced=referenced).body
    assert body["messages"] == [USER, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "again"}]
    with pytest.raises(InvalidRequest) as error:
        to_chat(request, raw)
    assert error.value.param == "input[0].id"


@pytest.mark.parametrize(("body", "glm", "expected"), [
    ({"reasoning": {"effort": "high"}}, True, {"thinking": {"type": "enabled"}}),
    ({"reasoning": {"effort": "none"}}, True, {"thinking": {"type": "disabled"}}),
    ({"reasoning": {"effort": "xhigh"}}, False, {"reasoning_effort": "high"}),
    ({"reasoning": {"effort": "none"}}, False, {}),
    ({"reasoning": {"summary": "auto"}}, True, {}),
    ({"max_output_tokens": 100, "temperature": 0.2, "top_p": 0.5, "user": "u", "prompt_cache_key": "k"}, False,
     {"max_tokens": 100, "temperature": 0.2, "top_p": 0.5, "user": "u", "prompt_cache_key": "k"}),
    ({"text": {"format": {"type": "json_object"}}}, False, {"response_format": {"type": "json_object"}}),
    ({"text": {"format": {"type": "json_schema", "name": "W", "schema": {"type": "object"}, "strict": True}}}, False,
     {"response_format": {"type": "json_schema", "json_schema": {"name": "W", "schema": {"type": "object"}, "strict": True}}}),
    ({"stream": True}, False, {"stream": True, "stream_options": {"include_usage": True}}),
    ({"x_sim": {"fault": "500"}, "store": False, "metadata": {"a": "b"}, "include": ["reasoning.encrypted_content"],
      "client_metadata": {"x": "y"}, "service_tier": "auto", "truncation": "auto", "user": None}, False,
     {"x_sim": {"fault": "500"}}),  # the client's extras pass through; Responses-only fields do not
])
def test_options(body: dict[str, Any], glm: bool, expected: dict[str, Any]) -> None:
    out = chat({"input": "hi", **body}, glm_thinking=glm)
    assert {k: v for k, v in out.items() if k not in ("model", "messages")} == expected


def test_tools_and_tool_choice() -> None:
    tools = [{"type": "function", "name": "f", "description": "F.", "parameters": {"type": "object"}, "strict": True},
             {"type": "custom", "name": "apply_patch"},
             {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "g"}]},
             {"type": "web_search"}, {"type": "local_shell"}]
    request, raw = decode_responses_request(msgspec.json.encode(
        {"model": "m", "input": "hi", "tools": tools, "tool_choice": {"type": "function", "name": "f"},
         "parallel_tool_calls": False}))
    translation = to_chat(request, raw)
    body = translation.body
    assert [tool["function"]["name"] for tool in body["tools"]] == ["f", "apply_patch", "g"]
    assert body["tools"][0] == {"type": "function", "function": {"name": "f", "parameters": {"type": "object"},
                                                                 "description": "F.", "strict": True}}
    assert body["tools"][1]["function"]["parameters"]["properties"]["input"]["type"] == "string"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "f"}} and body["parallel_tool_calls"] is False
    assert translation.custom_tools == {"apply_patch"} and translation.namespaces == {"g": "ns"}
    assert "tools" not in chat({"input": "hi", "tools": [{"type": "web_search"}]})  # nothing left to offer


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "computer_call"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]}, "input[0].content[0].image_url"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}]}, "input[0].content[0]"),
    ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
    ({"input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
    ({"input": "hi", "tools": [{"type": "namespace", "tools": [{"type": "web_search"}]}]}, "tools[0].tools[0].type"),
    ({"input": "hi", "tools": [{"type": "function", "name": "f"}], "tool_choice": "sometimes"}, "tool_choice"),
    ({"input": [{"role": "system", "content": "only a system prompt"}]}, "input"),
])
def test_what_cannot_be_translated_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        chat(body)
    assert error.value.param == param


CTX = ResponseContext("resp_abc", 1700000000, "glm-4.6", {}, frozenset({"apply_patch"}), {"g": "ns"})


def test_a_chat_reply_becomes_output_items() -> None:
    reply = {"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "On it.", "reasoning_content": "Think.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "apply_patch", "arguments": "{\"input\":\"P\"}"}}]}}]}
    items, reason = output_items(reply, CTX)
    assert reason is None
    assert items == [
        {"id": "rs_abc_0", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}]},
        {"id": "msg_abc_1", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "On it.", "annotations": [], "logprobs": []}]},
        {"id": "fc_abc_2", "type": "function_call", "status": "completed", "call_id": "c1", "name": "g",
         "arguments": "{}", "namespace": "ns"},
        {"id": "ctc_abc_3", "type": "custom_tool_call", "status": "completed", "call_id": "c2", "name": "apply_patch",
         "input": "P"},
    ]
    cut = {"choices": [{"finish_reason": "length", "message": {"role": "assistant", "content": "Half"}}]}
    items, reason = output_items(cut, CTX)
    assert reason == "max_output_tokens" and items[0]["status"] == "incomplete"


def events_of(data: bytes) -> list[dict[str, Any]]:
    blocks = [block for block in data.decode().split("\n\n") if block]
    out = []
    for block in blocks:
        name, payload = block.split("\n")
        event = json.loads(payload.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        out.append(event)
    return out


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return msgspec.json.encode({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def test_chunks_become_events_with_sequence_numbers() -> None:
    writer = ChatToResponseEvents(CTX)
    out = writer.feed_payload(chunk({"role": "assistant", "reasoning_content": "Thi"}))
    out += writer.feed_payload(chunk({"reasoning_content": "nk."}))
    out += writer.feed_payload(chunk({"content": "On "}))
    out += writer.feed_payload(chunk({"content": "it."}))
    out += writer.feed_payload(chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "g", "arguments": ""}}]}))
    out += writer.feed_payload(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    out += writer.feed_payload(chunk({"tool_calls": [{"index": 1, "id": "c2", "function": {"name": "apply_patch",
                                                                                           "arguments": "{\"input\""}}]}))
    out += writer.feed_payload(chunk({"tool_calls": [{"index": 1, "function": {"arguments": ":\"P\"}"}}]}, "tool_calls"))
    out += writer.feed_payload(msgspec.json.encode({"choices": [], "usage": {"prompt_tokens": 5}}))
    out += writer.finish(Usage(input_tokens=5, output_tokens=7), Decimal("0.000123"), 1700000001)
    events = events_of(out)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done", "response.completed"]
    final = events[-1]["response"]
    reply = {"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "On it.", "reasoning_content": "Think.", "tool_calls": [
            {"id": "c1", "function": {"name": "g", "arguments": "{}"}},
            {"id": "c2", "function": {"name": "apply_patch", "arguments": "{\"input\":\"P\"}"}}]}}]}
    assert final["output"] == output_items(reply, CTX)[0]  # the stream and the JSON answer agree
    assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == final["output"]
    assert final["status"] == "completed" and final["usage"]["cost"] == 0.000123 and final["completed_at"] == 1700000001
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["total_tokens"] == 12


def test_a_failure_ends_with_error_and_response_failed() -> None:
    writer = ChatToResponseEvents(CTX)
    out = writer.feed_payload(chunk({"content": "Hal"}))
    events = events_of(out + writer.fail("upstream_error", "the upstream broke"))
    assert [event["type"] for event in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == "upstream_error" and events[-1]["response"]["error"] == {
        "code": "server_error", "message": "the upstream broke"}
    assert events[-1]["response"]["status"] == "failed" and events[-1]["response"]["usage"] is None


def test_ids() -> None:
    resp = response_id("gen-0190abcdef")
    assert resp == "resp_0190abcdef" and generation_of(resp) == "gen-0190abcdef"
    assert item_response(item_id("msg", resp, 3)) == resp and item_response("msg_from_elsewhere_x") is None
    assert item_response("fc_1") is None
    numbered = number_input_items([{"role": "user", "content": "hi"}, {"type": "message", "id": "mine", "role": "user",
                                                                        "content": "x"}], resp)
    assert numbered[0] == {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}],
                           "id": "in_0190abcdef_0"}
    assert numbered[1]["id"] == "mine"


def test_echo_params_have_openais_defaults() -> None:
    request, _ = decode_responses_request(b'{"model": "m", "input": "hi"}')
    params = echo_params(request)
    assert params["store"] is True and params["tool_choice"] == "auto" and params["tools"] == []
    assert params["text"] == {"format": {"type": "text"}, "verbosity": "medium"} and params["parallel_tool_calls"] is True
