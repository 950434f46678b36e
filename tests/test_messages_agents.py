"""`/v1/messages` as coding agents call it, with the official anthropic SDK: system-role messages, tools,
`?beta=true`, the probes before the first call, errors in Anthropic's words, and exact costs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import pytest

from runapi.simulator import prompt_tokens
from tests.support.charges import charged_generations, generation, price
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url

MODELS = ["glm-4.6", "claude-sonnet-5-5"]
SYSTEM = "You are a coding agent."
ENVIRONMENT = {"role": "system", "content": "# Environment\nPrimary working directory: /tmp/w"}
ASK: list[Any] = [{"role": "user", "content": "Read notes.txt and tell me what it says."}, ENVIRONMENT]
READ: Any = {"name": "Read", "description": "Read a file.", "input_schema": {
    "type": "object", "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["file_path"]}}
SCRIPT = [{"tool_call": {"name": "Read", "arguments": {"file_path": "/tmp/w/notes.txt"}}},
          {"text": "The notes say: ship it."}]


@pytest.fixture()
def sdk(gateway: RunningGateway) -> Iterator[tuple[str, anthropic.Anthropic]]:
    account, key = gateway.create_account("1")
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0) as client:
        yield account, client


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_agent_loop_with_system_messages_and_tools(gateway: RunningGateway, sim: httpx.Client,
                                                   sdk: tuple[str, anthropic.Anthropic], model: str,
                                                   stream: bool) -> None:
    account, client = sdk
    extra = {"x_sim": {"script": SCRIPT}}

    def call(messages: list[Any]) -> tuple[anthropic.types.Message, Decimal]:
        if not stream:
            raw = client.messages.with_raw_response.create(model=model, max_tokens=4096, system=SYSTEM,
                                                           messages=messages, tools=[READ], extra_body=extra)
            message = raw.parse()
            return message, Decimal(str(message.usage.model_extra["cost"]))  # type: ignore[index]
        with client.messages.stream(model=model, max_tokens=4096, system=SYSTEM, messages=messages, tools=[READ],
                                    extra_body=extra) as events:
            deltas = [event for event in events if event.type == "message_delta"]
            return events.get_final_message(), Decimal(str((deltas[-1].usage.model_extra or {})["cost"]))

    first, first_cost = call(ASK)
    sent = sim.get("/_sim/stats").json()["last_request"]
    if model == "glm-4.6":  # folded into the one system message of the chat translation
        assert sent["messages"][0] == {"role": "system", "content": SYSTEM + "\n\n" + ENVIRONMENT["content"]}
        assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    else:  # relayed where it stands: Claude models take mid-conversation system messages
        assert sent["messages"] == ASK and sent["system"] == SYSTEM
    (use,) = [block for block in first.content if block.type == "tool_use"]
    assert (first.stop_reason, use.name, use.input) == ("tool_use", "Read", {"file_path": "/tmp/w/notes.txt"})
    history = [*ASK, {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in first.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "ship it"}]}]
    second, second_cost = call(history)
    assert second.stop_reason == "end_turn" and second.content[-1].text == "The notes say: ship it."  # type: ignore[union-attr]
    rows = {row["id"]: row for row in charged_generations(gateway, account, str(client.api_key), Decimal(1))}
    assert set(rows) == {first.id, second.id}
    assert rows[first.id]["cost"] == first_cost and rows[second.id]["cost"] == second_cost  # usage.cost is exact
    assert rows[second.id]["usage"]["output_tokens"] == 5 and rows[first.id]["stream"] is stream


def test_beta_query_and_headers_reach_native_upstreams(gateway: RunningGateway, sim: httpx.Client,
                                                       sdk: tuple[str, anthropic.Anthropic]) -> None:
    _, client = sdk
    message = client.beta.messages.create(
        model="claude-sonnet-5-5", max_tokens=1024, messages=ASK, betas=["context-management-2025-06-27"],
        thinking={"type": "adaptive"}, context_management={"edits": [{"type": "clear_thinking_20251015"}]},
        extra_query={"beta": "true"},  # how Claude Code's (TypeScript) SDK calls the beta surface
        extra_body={"output_config": {"effort": "low"}, "service_tier": "standard_only",
                    "cache_control": {"type": "ephemeral", "ttl": "1h"}})
    assert message.content[0].type == "text"
    stats = sim.get("/_sim/stats").json()
    assert stats["last_target"] == "/v1/messages?beta=true"
    assert stats["last_headers"]["anthropic-beta"] == "context-management-2025-06-27"
    sent = stats["last_request"]
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "low"}
    assert sent["context_management"] == {"edits": [{"type": "clear_thinking_20251015"}]}
    assert sent["service_tier"] == "standard_only" and sent["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    client.beta.messages.create(model="glm-4.6", max_tokens=1024, messages=ASK, thinking={"type": "adaptive"},
                                context_management={"edits": [{"type": "clear_thinking_20251015"}]},
                                extra_query={"beta": "true"})
    stats = sim.get("/_sim/stats").json()
    assert stats["last_target"] == "/v1/chat/completions"
    assert not {"thinking", "context_management", "anthropic-beta"} & set(stats["last_request"])


def test_a_model_that_refuses_system_messages_gets_them_folded(sim_url: str, tmp_path: Any) -> None:
    with run_gateway(sqlite_url(tmp_path), sim_url, circuit_failures=0) as gw, \
            httpx.Client(base_url=sim_url) as sim:
        sim.post("/_sim/reset").raise_for_status()
        account, key = gw.create_account("1")
        body = {"model": "claude-haiku-4-5", "max_tokens": 50, "system": SYSTEM, "messages": ASK,
                "x_sim": {"reject_system_messages": True}}
        for attempt in (1, 2):
            response = httpx.post(f"{gw.base_url}/v1/messages", json=body, headers={"x-api-key": key})
            assert response.status_code == 200, response.text
            stats = sim.get("/_sim/stats").json()
            assert stats["last_request"]["messages"] == ASK[:1]
            assert stats["last_request"]["system"] == [{"type": "text", "text": SYSTEM},
                                                      {"type": "text", "text": ENVIRONMENT["content"]}]
            assert stats["requests"] == (2 if attempt == 1 else 3)  # refused once, folded from then on
        assert len(charged_generations(gw, account, key, Decimal(1))) == 2  # the refusal was free


def test_probes_before_the_first_call(gateway: RunningGateway) -> None:
    for method, path in (("HEAD", "/"), ("HEAD", "/api/hello"), ("GET", "/api/hello")):
        response = httpx.request(method, f"{gateway.base_url}{path}", follow_redirects=False)
        assert response.status_code == 200, (method, path, response.status_code)
    assert httpx.get(f"{gateway.base_url}/api/hello").json() == {"message": "hello"}
    assert httpx.get(f"{gateway.base_url}/", follow_redirects=False).status_code == 303  # browsers: the catalog


def test_errors_clients_recognise(gateway: RunningGateway, sdk: tuple[str, anthropic.Anthropic]) -> None:
    account, client = sdk
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-0", max_tokens=5, messages=ASK)
    assert missing.value.body == {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-0"}}
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.create(model="glm-4.6", max_tokens=5, messages=ASK, extra_body={"x_sim": {"fault": "429"}})
    body: Any = overloaded.value.body
    assert overloaded.value.status_code == 529 and body["error"]["type"] == "overloaded_error"
    poor, poor_key = gateway.create_account("0.000001")
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=poor_key, max_retries=0) as broke:
        with pytest.raises(anthropic.APIStatusError) as billing:
            broke.messages.create(model="claude-sonnet-5-5", max_tokens=4096, messages=ASK)
    body = billing.value.body
    assert billing.value.status_code == 402 and body["error"]["type"] == "billing_error"
    assert "credit balance is too low" in body["error"]["message"].lower()
    assert gateway.balance(account) == Decimal(1) and gateway.balance(poor) == Decimal("0.000001")


def test_count_tokens_with_system_messages(gateway: RunningGateway, sdk: tuple[str, anthropic.Anthropic]) -> None:
    _, client = sdk
    count = client.messages.count_tokens(model="claude-sonnet-5-5", system=SYSTEM, messages=ASK)
    assert count.input_tokens == prompt_tokens(ASK, SYSTEM)  # the upstream's own count of the relayed body
    assert client.messages.count_tokens(model="glm-4.6", messages=ASK).input_tokens > 0


def test_generation_cost_is_catalog_prices_times_usage(gateway: RunningGateway,
                                                       sdk: tuple[str, anthropic.Anthropic]) -> None:
    _, client = sdk
    message = client.messages.create(model="claude-sonnet-5-5", max_tokens=64, messages=ASK,
                                     extra_body={"x_sim": {"cached_tokens": 3, "cache_creation_tokens": 4}})
    row = generation(gateway, str(client.api_key), message.id)
    assert row["usage"]["cache_read_tokens"] == 3 and row["usage"]["cache_write_tokens"] == 4
    assert row["cost"] == price("claude-sonnet-5-5", row["usage"]) > 0
