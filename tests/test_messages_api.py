"""`/v1/messages` with the official anthropic SDK, for an OpenAI-protocol model (glm-4.5-air, translated)
and an Anthropic-protocol model (claude-sonnet-5-5, relayed natively)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest

from runapi.simulator import prompt_tokens, reply_words
from tests.support.gateway import RunningGateway
from tests.support.sse import decode

M = Decimal(1_000_000)
PRICES = {  # input, output, cache read, cache write (USD per 1M tokens)
    "glm-4.5-air": (Decimal("0.10"), Decimal("0.55"), Decimal("0.02"), Decimal("0")),
    "claude-sonnet-5-5": (Decimal("2.00"), Decimal("10.00"), Decimal("0.20"), Decimal("2.50")),
}
MODELS = list(PRICES)
SYSTEM = "You are terse."
HELLO = [{"role": "user", "content": "hello there"}]
TOOL = {"name": "get_weather", "description": "Current weather for a city",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
TEXT = " ".join(reply_words(12))


Client = Callable[[RunningGateway, str], anthropic.Anthropic]


@pytest.fixture()
def client() -> Iterator[Client]:
    """Makes anthropic SDK clients for a gateway and key; closes them after the test."""
    made: list[anthropic.Anthropic] = []

    def make(gw: RunningGateway, key: str) -> anthropic.Anthropic:
        made.append(anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0))
        return made[-1]

    yield make
    for sdk in made:
        sdk.close()


def cost(model: str, input_tokens: int, output: int, read: int = 0, write: int = 0) -> Decimal:
    price_in, price_out, price_read, price_write = PRICES[model]
    return (input_tokens * price_in + output * price_out + read * price_read + write * price_write) / M


def prompt_of(model: str) -> int:
    """What the simulator counts for SYSTEM + HELLO: as a system message (OpenAI), or Anthropic's `system`."""
    if model == "glm-4.5-air":
        return prompt_tokens([{"role": "system", "content": SYSTEM}, *HELLO])
    return prompt_tokens(HELLO, SYSTEM)


def generation(gw: RunningGateway, key: str, generation_id: str) -> dict[str, Any]:
    return dict(decode(httpx.get(f"{gw.base_url}/v1/generations/{generation_id}",
                                 headers={"authorization": f"Bearer {key}"}).raise_for_status().content))


@pytest.mark.parametrize("model", MODELS)
def test_text_with_anthropic_usage_semantics(gateway: RunningGateway, model: str, client: Client) -> None:
    account, key = gateway.create_account("1")
    cache = {"cached_tokens": 4, "cache_creation_tokens": 5}
    raw = client(gateway, key).messages.with_raw_response.create(
        model=model, max_tokens=100, system=SYSTEM, messages=HELLO, extra_body={"x_sim": cache})
    message, body = raw.parse(), decode(raw.http_response.content)
    assert [block.type for block in message.content] == ["text"] and message.content[0].text == TEXT
    assert message.model == model and message.id.startswith("gen-") and message.stop_reason == "end_turn"
    assert raw.headers["x-runapi-generation-id"] == message.id

    prompt = prompt_of(model)
    # OpenAI upstreams report cached reads only (inside prompt_tokens); Anthropic ones report writes too.
    write = 5 if model == "claude-sonnet-5-5" else 0
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (
        prompt - 4 - write, 4, write)  # Anthropic semantics: input_tokens exclude cache reads and writes
    assert usage.output_tokens == 12
    expected = cost(model, prompt - 4 - write, 12, read=4, write=write)
    assert body["usage"]["cost"] == expected
    assert gateway.balance(account) == Decimal(1) - expected == gateway.ledger_sum(account)

    row = generation(gateway, key, message.id)
    assert row["model"] == model and row["cost"] == expected and row["status"] == "succeeded"
    assert row["usage"]["prompt_tokens"] == prompt  # OpenAI semantics in the generation view


@pytest.mark.parametrize("model", MODELS)
def test_streaming_matches_the_whole_answer(gateway: RunningGateway, model: str, client: Client) -> None:
    account, key = gateway.create_account("1")
    sdk = client(gateway, key)
    whole = sdk.messages.create(model=model, max_tokens=100, system=SYSTEM, messages=HELLO,
                                extra_body={"x_sim": {"cached_tokens": 2}})
    with sdk.messages.stream(model=model, max_tokens=100, system=SYSTEM, messages=HELLO,
                             extra_body={"x_sim": {"cached_tokens": 2}}) as stream:
        events = list(stream)
        final = stream.get_final_message()
    text = "".join(event.text for event in events if event.type == "text")
    (delta,) = [event for event in events if event.type == "message_delta"]
    assert text == TEXT == final.content[0].text
    assert final.id.startswith("gen-") and final.id != whole.id and final.model == model
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == whole.usage.input_tokens == prompt_of(model) - 2
    assert final.usage.cache_read_input_tokens == 2 and final.usage.output_tokens == 12
    assert Decimal(str(delta.usage.model_extra["cost"])) == cost(model, prompt_of(model) - 2, 12, read=2)
    assert gateway.balance(account) == Decimal(1) - 2 * cost(model, prompt_of(model) - 2, 12, read=2)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_use_then_tool_result(gateway: RunningGateway, model: str, stream: bool, client: Client) -> None:
    _, key = gateway.create_account("1")
    sdk = client(gateway, key)
    ask = [{"role": "user", "content": "Weather in Oslo?"}]

    def call(messages: list[dict[str, Any]]) -> Any:
        if not stream:
            return sdk.messages.create(model=model, max_tokens=100, tools=[TOOL], messages=messages)
        with sdk.messages.stream(model=model, max_tokens=100, tools=[TOOL], messages=messages) as events:
            return events.get_final_message()

    first = call(ask)
    assert first.stop_reason == "tool_use"
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"query": "lorem"} and use.id
    second = call([*ask, {"role": "assistant", "content": [block.model_dump() for block in first.content]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "12 C"}]}])
    assert second.stop_reason == "end_turn" and second.content[-1].text == TEXT


def test_native_relay_keeps_the_body_and_forwards_anthropic_headers(gateway: RunningGateway,
                                                                    sim: httpx.Client, client: Client) -> None:
    _, key = gateway.create_account("1")
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    client(gateway, key).messages.create(
        model="claude-sonnet-5-5", max_tokens=50, system=system, messages=HELLO,  # type: ignore[arg-type]
        extra_body={"top_k": 3},
        extra_headers={"anthropic-beta": "context-1m-2025-08-07", "anthropic-version": "2023-06-01"})
    stats = sim.get("/_sim/stats").json()
    sent = stats["last_request"]
    assert sent["system"] == system and sent["top_k"] == 3 and sent["messages"] == HELLO
    assert sent["model"] == "claude-sonnet-5-5"  # the deployment's upstream name
    assert stats["last_headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    assert stats["last_headers"]["anthropic-version"] == "2023-06-01"  # the client's, not the SDK default
    assert "authorization" not in stats["last_headers"]  # the client's key never travels upstream


def test_translated_request_reaches_openai_upstreams(gateway: RunningGateway, sim: httpx.Client, client: Client) -> None:
    _, key = gateway.create_account("1")
    client(gateway, key).messages.create(
        model="glm-4.5-air", max_tokens=50, system=SYSTEM, messages=HELLO, stop_sequences=["END"],
        metadata={"user_id": "u-7"}, thinking={"type": "enabled", "budget_tokens": 1024})
    sent = sim.get("/_sim/stats").json()["last_request"]
    assert sent["messages"] == [{"role": "system", "content": SYSTEM}, *HELLO]
    assert (sent["max_tokens"], sent["stop"], sent["user"]) == (50, ["END"], "u-7")
    assert sent["thinking"] == {"type": "enabled"} and sent["stream"] is False


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens_is_free(gateway: RunningGateway, model: str, client: Client) -> None:
    account, key = gateway.create_account("1")
    count = client(gateway, key).messages.count_tokens(model=model, system=SYSTEM, messages=HELLO)
    if model == "claude-sonnet-5-5":
        assert count.input_tokens == prompt_tokens(HELLO, SYSTEM)  # the upstream's own count
    else:  # the gateway's documented estimate: prompt bytes / 3, rounded up
        assert count.input_tokens == -(-(len(SYSTEM) + len("hello there") + 2 * 12) // 3)
    assert gateway.balance(account) == Decimal(1) and gateway.ledger(account)[-1]["kind"] == "topup"


def test_errors_are_anthropic_shaped(gateway: RunningGateway, client: Client) -> None:
    account, key = gateway.create_account("1")
    with pytest.raises(anthropic.AuthenticationError) as auth:
        client(gateway, "rk-wrong").messages.create(model="glm-4.5-air", max_tokens=5, messages=HELLO)
    assert auth.value.body == {"type": "error", "error": {"type": "authentication_error",
                                                          "message": auth.value.body["error"]["message"]}}
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(gateway, key).messages.create(model="claude-0", max_tokens=5, messages=HELLO)
    assert missing.value.body["error"]["type"] == "not_found_error"
    response = httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": key},
                          json={"model": "glm-4.5-air", "messages": HELLO})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error" and "max_tokens" in response.text
    with pytest.raises(anthropic.APIStatusError) as upstream:
        client(gateway, key).messages.create(model="glm-4.5-air", max_tokens=5, messages=HELLO,
                                             extra_body={"x_sim": {"fault": "500"}})
    assert upstream.value.status_code == 529 and upstream.value.body["error"]["type"] == "overloaded_error"
    assert gateway.balance(account) == Decimal(1)


@pytest.mark.parametrize("model", MODELS)
def test_stream_cut_after_first_bytes_ends_with_an_error_event_and_is_free(gateway: RunningGateway,
                                                                           model: str, client: Client) -> None:
    account, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": key}, timeout=10, json={
        "model": model, "max_tokens": 100, "messages": HELLO, "stream": True,
        "x_sim": {"fault": "cut", "completion_tokens": 20}})
    assert response.status_code == 200
    blocks = [block for block in response.text.split("\n\n") if block]
    assert blocks[0].startswith("event: message_start") and '"text":"lorem"' in response.text
    assert "message_stop" not in response.text
    name, data = blocks[-1].split("\n")
    assert name == "event: error"
    error = decode(data[len("data: "):])
    assert error["type"] == "error" and error["error"]["type"] == "api_error" and error["error"]["message"]
    with pytest.raises(anthropic.APIStatusError):
        with client(gateway, key).messages.stream(model=model, max_tokens=100, messages=HELLO,
                                                  extra_body={"x_sim": {"fault": "cut"}}) as stream:
            stream.until_done()
    assert gateway.balance(account) == Decimal(1) == gateway.ledger_sum(account)


def test_search_results_pass_natively_and_become_text_elsewhere(gateway: RunningGateway, sim: httpx.Client) -> None:
    account, key = gateway.create_account("1")
    messages = [{"role": "user", "content": [
        {"type": "search_result", "source": "https://example.com", "title": "Doc",
         "content": [{"type": "text", "text": "some facts"}]},
        {"type": "text", "text": "summarise"}]}]
    body = {"model": "claude-sonnet-5-5", "max_tokens": 20, "messages": messages}
    response = httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": key}, json=body)
    assert response.status_code == 200, response.text
    assert sim.get("/_sim/stats").json()["last_request"]["messages"] == messages
    response = httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": key},
                          json={**body, "model": "glm-4.5-air"})
    assert response.status_code == 200, response.text
    assert sim.get("/_sim/stats").json()["last_request"]["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "Doc\nhttps://example.com\n\nsome facts"}, {"type": "text", "text": "summarise"}]}]
    file_image = {"type": "image", "source": {"type": "file", "file_id": "file_1"}}  # Anthropic's Files API only
    response = httpx.post(f"{gateway.base_url}/v1/messages", headers={"x-api-key": key}, json={
        **body, "model": "glm-4.5-air", "messages": [{"role": "user", "content": [file_image]}]})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["message"].startswith("Images need a base64 or url source")
    assert len([e for e in gateway.ledger(account) if e["kind"] == "charge"]) == 2  # the refused call is free
