"""Chat completions to an Anthropic-protocol model: the adapter's round trips, with the official openai SDK.

claude-sonnet-5-5 is deployed on the simulator's Anthropic Messages endpoint; the gateway
translates OpenAI requests to Messages and the answers (JSON and SSE) back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from runapi.simulator import prompt_tokens, reply_words
from tests.support.gateway import RunningGateway
from tests.support.sse import decode

MODEL = "claude-sonnet-5-5"
IN, OUT, CACHE_READ, CACHE_WRITE = Decimal("2.00"), Decimal("10.00"), Decimal("0.20"), Decimal("2.50")
M = Decimal(1_000_000)
CREDIT = Decimal(2)  # a call without max_tokens holds 128K output tokens: $1.28
SYSTEM = "You are terse."
QUESTION = "Say hello world"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}


Client = Callable[[RunningGateway, str], openai.OpenAI]


@pytest.fixture()
def client() -> Iterator[Client]:
    """Makes openai SDK clients for a gateway and key; closes them after the test."""
    made: list[openai.OpenAI] = []

    def make(gw: RunningGateway, key: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def cost(input_tokens: int, output: int, read: int = 0, write: int = 0) -> Decimal:
    return (input_tokens * IN + output * OUT + read * CACHE_READ + write * CACHE_WRITE) / M


def reassemble(chunks: list[Any]) -> dict[str, Any]:
    """A streamed answer put back together as the message a non-streaming call returns."""
    text, calls, finish = "", {}, None
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function.name or "") if call.function else ""
                entry["arguments"] += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    return {"content": text or None, "tool_calls": [calls[i] for i in sorted(calls)], "finish_reason": finish}


def test_text_with_system_prompt_and_exact_cache_billing(gateway: RunningGateway, sim: httpx.Client, client: Client) -> None:
    account, key = gateway.create_account(CREDIT)
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}],
        extra_body={"x_sim": {"cached_tokens": 4, "cache_creation_tokens": 5}})
    completion, body = raw.parse(), decode(raw.http_response.content)

    sent = sim.get("/_sim/stats").json()
    assert sent["last_request"]["system"] == SYSTEM
    assert sent["last_request"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    assert sent["last_request"]["model"] == "claude-sonnet-5-5"
    assert sent["last_request"]["max_tokens"] == 128000  # the model's max output when the client sets none
    assert sent["last_headers"]["anthropic-version"] == "2023-06-01"

    assert completion.choices[0].message.content == " ".join(reply_words(12))
    assert completion.choices[0].finish_reason == "stop" and completion.model == MODEL
    prompt = prompt_tokens([{"role": "user", "content": QUESTION}], SYSTEM)
    assert prompt == 12
    # OpenAI semantics: prompt_tokens counts everything read, cached or not.
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, 12)
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    assert body["usage"]["prompt_tokens_details"]["cache_write_tokens"] == 5
    expected = cost(prompt - 4 - 5, 12, read=4, write=5)
    assert body["usage"]["cost"] == expected == Decimal("0.0001393")
    assert gateway.balance(account) == CREDIT - expected == gateway.ledger_sum(account)

    row = decode(httpx.get(f"{gateway.base_url}/v1/generations/{completion.id}",
                           headers={"authorization": f"Bearer {key}"}).content)
    assert row["usage"]["input_tokens"] == 3 and row["usage"]["cache_read_tokens"] == 4
    assert row["usage"]["cache_write_tokens"] == 5 and row["pricing"]["cache_write"] == "2.50"
    assert row["provider"] == "anthropic" and row["cost"] == expected


def test_tool_call_then_tool_result(gateway: RunningGateway, sim: httpx.Client, client: Client) -> None:
    _, key = gateway.create_account(CREDIT)
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client(gateway, key).chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == '{"query":"lorem"}'
    assert sim.get("/_sim/stats").json()["last_request"]["tools"] == [{
        "name": "get_weather", "description": "Current weather for a city",
        "input_schema": WEATHER["function"]["parameters"]}]  # type: ignore[index]

    turn = [*ask, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "12 degrees"}]
    second = client(gateway, key).chat.completions.create(model=MODEL, messages=turn, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == " ".join(reply_words(12))
    sent = sim.get("/_sim/stats").json()["last_request"]["messages"]
    assert sent[1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": call.id, "name": "get_weather", "input": {"query": "lorem"}}]}
    assert sent[2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": call.id, "content": "12 degrees"}]}


def test_streaming_reassembles_to_the_same_message(gateway: RunningGateway, client: Client) -> None:
    account, key = gateway.create_account(CREDIT)
    sdk = client(gateway, key)
    for tools in (None, [WEATHER]):
        kwargs: dict[str, Any] = {"tools": tools} if tools else {}
        whole = sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": QUESTION}], **kwargs)
        chunks = list(sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], stream=True,
            stream_options={"include_usage": True}, **kwargs))
        streamed = reassemble(chunks)
        message = whole.choices[0].message
        assert streamed["content"] == message.content
        assert streamed["finish_reason"] == whole.choices[0].finish_reason
        # the same call; streamed arguments are the upstream's JSON fragments, so compare them as JSON
        assert [(c["name"], json.loads(c["arguments"])) for c in streamed["tool_calls"]] == [
            (c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or ()]
        assert all(c["id"].startswith("toolu_") for c in streamed["tool_calls"])
        (usage_chunk,) = [c for c in chunks if c.usage is not None]
        assert usage_chunk.usage.prompt_tokens == whole.usage.prompt_tokens
        assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens
        assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("gen-")
        assert {c.model for c in chunks} == {MODEL}
    # four calls, each 6 prompt tokens and 12 output tokens, charged exactly
    assert gateway.balance(account) == CREDIT - 4 * cost(6, 12)


def test_images_travel_as_content_blocks(gateway: RunningGateway, sim: httpx.Client, client: Client) -> None:
    account, key = gateway.create_account(CREDIT)
    completion = client(gateway, key).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    blocks = sim.get("/_sim/stats").json()["last_request"]["messages"][0]["content"]
    assert blocks[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                     "data": "iVBORw0KGgo="}}
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    assert completion.usage.prompt_tokens == 3 + 3 + 2 * 85  # the simulator counts 85 per image
    assert gateway.balance(account) == CREDIT - cost(176, 12)


def test_stop_and_max_tokens_map_to_stop_reasons(gateway: RunningGateway, sim: httpx.Client, client: Client) -> None:
    _, key = gateway.create_account(CREDIT)
    completion = client(gateway, key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=5, stop=["END"], temperature=1.5)
    sent = sim.get("/_sim/stats").json()["last_request"]
    assert (sent["max_tokens"], sent["stop_sequences"], sent["temperature"]) == (5, ["END"], 1.0)
    assert completion.choices[0].finish_reason == "length" and completion.usage.completion_tokens == 5


def test_untranslatable_request_is_400_and_free(gateway: RunningGateway) -> None:
    account, key = gateway.create_account(CREDIT)
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "n": 2,
                                "max_tokens": 10})
    assert response.status_code == 400 and response.json()["error"]["param"] == "n"
    assert gateway.balance(account) == CREDIT


def test_mid_stream_error_event_from_anthropic_is_not_charged(gateway: RunningGateway) -> None:
    account, key = gateway.create_account(CREDIT)
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": MODEL, "messages": [{"role": "user", "content": QUESTION}], "stream": True,
                                "x_sim": {"fault": "error_event"}}, timeout=10)
    events = [line[6:] for line in response.text.split("\n") if line.startswith("data: ")]
    assert '"content":"lorem"' in response.text and "[DONE]" not in events
    error = decode(events[-1])["error"]
    assert error["type"] == "upstream_error" and "Overloaded" in error["message"]
    assert gateway.balance(account) == CREDIT == gateway.ledger_sum(account)
