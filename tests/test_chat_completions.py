"""Chat completions through a real gateway and a real simulator, with the official openai SDK."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest

from runapi.simulator import prompt_tokens, reply_words
from tests.support.gateway import RunningGateway
from tests.support.sse import decode, sse_data

MESSAGES = [{"role": "user", "content": "hello there"}]
AIR_IN, AIR_OUT, AIR_CACHE = Decimal("0.10"), Decimal("0.55"), Decimal("0.02")
M = Decimal(1_000_000)


def air_cost(prompt: int, completion: int, cached: int = 0) -> Decimal:
    return ((prompt - cached) * AIR_IN + cached * AIR_CACHE + completion * AIR_OUT) / M


def client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0)


def test_non_streaming_usage_cost_and_generation(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    raw = client(gateway, key).chat.completions.with_raw_response.create(model="glm-4.5-air", messages=MESSAGES)
    completion = raw.parse()
    body = decode(raw.http_response.content)
    prompt = prompt_tokens(MESSAGES)
    assert completion.choices[0].message.content == " ".join(reply_words(12))
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt, 12)
    expected = air_cost(prompt, 12)
    assert body["usage"]["cost"] == expected == Decimal("0.0000071")
    assert completion.model == "glm-4.5-air"
    assert raw.headers["x-runapi-generation-id"] == completion.id and completion.id.startswith("gen-")
    assert float(raw.headers["x-runapi-overhead-ms"]) >= 0

    generation = decode(httpx.get(f"{gateway.base_url}/v1/generations/{completion.id}",
                                  headers={"authorization": f"Bearer {key}"}).raise_for_status().content)
    assert generation["status"] == "succeeded"
    assert generation["usage"]["prompt_tokens"] == prompt and generation["usage"]["completion_tokens"] == 12
    assert generation["cost"] == expected and generation["estimated"] is False
    assert generation["latency_ms"] > 0
    assert gateway.balance(account) == Decimal(1) - expected == gateway.ledger_sum(account)


def test_streaming_relays_text_and_reports_exact_usage(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    stream = client(gateway, key).chat.completions.create(
        model="glm-4.5-air", messages=MESSAGES, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " ".join(reply_words(12))
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
    assert usage_chunks[0].usage.completion_tokens == 12
    assert Decimal(str(usage_chunks[0].usage.model_extra["cost"])) == air_cost(prompt_tokens(MESSAGES), 12)
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("gen-")


def test_usage_chunk_hidden_from_a_client_that_did_not_ask(gateway: RunningGateway, sim: httpx.Client) -> None:
    account, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "messages": MESSAGES, "stream": True}, timeout=10)
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    assert all('"usage"' not in e for e in events)
    # ...but the gateway asked the upstream for it, and billed exactly.
    assert sim.get("/_sim/stats").json()["last_request"]["stream_options"] == {"include_usage": True}
    assert gateway.balance(account) == Decimal(1) - air_cost(prompt_tokens(MESSAGES), 12)


def test_cached_tokens_billed_at_cache_read_price(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    completion = client(gateway, key).chat.completions.create(
        model="glm-4.5-air", messages=MESSAGES, extra_body={"x_sim": {"cached_tokens": 3}})
    assert completion.usage.prompt_tokens_details.cached_tokens == 3
    expected = air_cost(prompt_tokens(MESSAGES), 12, cached=3)
    assert expected == Decimal("0.00000686")
    assert gateway.balance(account) == Decimal(1) - expected


def test_unknown_fields_pass_through_and_model_is_rewritten(gateway: RunningGateway, sim: httpx.Client) -> None:
    _, key = gateway.create_account("1")
    client(gateway, key).chat.completions.create(
        model="glm-4.5-air", messages=MESSAGES, extra_body={"thinking": {"type": "enabled"}, "tool_stream": True})
    sent = sim.get("/_sim/stats").json()["last_request"]
    assert sent["thinking"] == {"type": "enabled"} and sent["tool_stream"] is True
    assert sent["model"] == "glm-4.5-air" and "stream_options" not in sent


def test_client_request_id_is_echoed(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions",
                          headers={"authorization": f"Bearer {key}", "x-client-request-id": "trace-42"},
                          json={"model": "glm-4.5-air", "messages": MESSAGES})
    assert response.headers["x-client-request-id"] == "trace-42"
    generation = httpx.get(f"{gateway.base_url}/v1/generations/{response.json()['id']}",
                           headers={"authorization": f"Bearer {key}"}).json()
    assert generation["client_request_id"] == "trace-42"


def test_reasoning_tokens_billed_as_output(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    completion = client(gateway, key).chat.completions.create(
        model="glm-4.5-air", messages=MESSAGES, extra_body={"x_sim": {"reasoning_tokens": 5}})
    assert completion.usage.completion_tokens == 17
    assert completion.choices[0].message.model_extra["reasoning_content"]
    assert gateway.balance(account) == Decimal(1) - air_cost(prompt_tokens(MESSAGES), 17)


def test_generation_of_another_account_is_not_found(gateway: RunningGateway) -> None:
    _, key_a = gateway.create_account("1")
    _, key_b = gateway.create_account("1")
    completion = client(gateway, key_a).chat.completions.create(model="glm-4.5-air", messages=MESSAGES)
    response = httpx.get(f"{gateway.base_url}/v1/generations/{completion.id}", headers={"authorization": f"Bearer {key_b}"})
    assert response.status_code == 404


@pytest.mark.parametrize("model", ["glm-4.5", "glm-4.6", "glm-4.7", "gpt-4o-mini", "deepseek-chat"])
def test_every_openai_protocol_model_answers(gateway: RunningGateway, model: str) -> None:
    _, key = gateway.create_account("1")
    completion = client(gateway, key).chat.completions.create(model=model, messages=MESSAGES)
    assert completion.model == model and completion.usage.completion_tokens == 12
