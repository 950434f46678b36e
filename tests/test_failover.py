"""Failover across deployments and fallback models, against real simulator instances.

glm-4.5-air has two deployments, on simulators A (always tried first) and B; glm-4.5's first
deployment refuses connections; glm-4.6 (deployed on C) falls back to glm-4.5-air, and
claude-haiku-4-5 (Anthropic protocol, on C) falls back to glm-4.5-air too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import RunningGateway
from tests.support.sse import decode, sse_data
from tests.support.upstreams import (
    FIRST,
    LAST,
    Upstream,
    custom_gateway,
    deployments,
    refused_url,
    routed_config,
    simulators,
)

HELLO = [{"role": "user", "content": "hello there"}]
M = Decimal(1_000_000)
AIR_COST = (5 * Decimal("0.10") + 12 * Decimal("0.55")) / M  # 5 prompt tokens, 12 output tokens


class Routed:
    def __init__(self, gw: RunningGateway, a: Upstream, b: Upstream, c: Upstream) -> None:
        self.gw, self.a, self.b, self.c = gw, a, b, c


@pytest.fixture(scope="module")
def routed(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    with simulators(3) as (a, b, c):
        config = routed_config(
            sim_url,
            {"sim-a": ("openai", a.url), "sim-b": ("openai", b.url), "sim-c": ("openai", c.url),
             "sim-c-anthropic": ("anthropic", c.url), "refused": ("openai", refused_url())},
            {"glm-4.5-air": deployments(("sim-a", "glm-4.5-air", FIRST), ("sim-b", "glm-4.5-air", LAST)),
             "glm-4.5": deployments(("refused", "glm-4.5", FIRST), ("sim-b", "glm-4.5", LAST)),
             "glm-4.6": {**deployments(("sim-c", "glm-4.6", 1)), "fallbacks": ["glm-4.5-air"]},
             "claude-haiku-4-5": {**deployments(("sim-c-anthropic", "claude-haiku-4-5-20251001", 1)),
                                  "fallbacks": ["glm-4.5-air"]}},
            first_byte_timeout=1.0, idle_timeout=1.0, retry_backoff=0.01, circuit_failures=0)
        with custom_gateway(tmp_path_factory.mktemp("failover"), config) as gw:
            yield Routed(gw, a, b, c)


@pytest.fixture()
def env(routed: Routed) -> Routed:
    for upstream in (routed.a, routed.b, routed.c):
        upstream.control.post("/_sim/reset").raise_for_status()
    return routed


def chat(env: Routed, key: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{env.gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "messages": HELLO, **body}, timeout=30)


def generations(env: Routed, account: str) -> list[dict[str, Any]]:
    return list(decode(env.gw.admin.get("/admin/generations", params={"account_id": account}).content)["data"])


def assert_charged_once(env: Routed, account: str, cost: Decimal) -> dict[str, Any]:
    charges = [e for e in env.gw.ledger(account) if e["kind"] == "charge"]
    assert len(charges) == 1 and Decimal(str(charges[0]["amount"])) == -cost
    assert env.gw.balance(account) == Decimal(1) - cost
    (row,) = generations(env, account)
    return row


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("fault", ["500", "429", "stall"])
def test_first_deployment_fails_second_answers_charged_once(env: Routed, fault: str, stream: bool) -> None:
    account, key = env.gw.create_account("1")
    env.a.faults(fault)
    started = time.monotonic()
    response = chat(env, key, stream=stream)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    if stream:
        assert sse_data(response.text)[-1] == "[DONE]"
        assert '"content":"lorem"' in response.text
    else:
        assert response.json()["model"] == "glm-4.5-air" and response.json()["choices"][0]["message"]["content"]
    assert (env.a.requests, env.b.requests) == (1, 1)
    row = assert_charged_once(env, account, AIR_COST)
    assert row["provider"] == "sim-b" and row["status"] == "succeeded"
    if fault == "429":
        assert elapsed < 0.9  # a different deployment is tried at once; retry-after binds only the one that sent it
    if fault == "stall":
        assert 0.9 < elapsed < 5  # the first-byte (or, streaming, idle) timeout of 1 s, then the answer


def test_refused_connection_fails_over(env: Routed) -> None:
    account, key = env.gw.create_account("1")
    with openai.OpenAI(base_url=env.gw.base_url + "/v1", api_key=key, max_retries=0) as sdk:
        completion = sdk.chat.completions.create(model="glm-4.5", messages=HELLO)
    assert completion.model == "glm-4.5" and env.b.requests == 1
    row = assert_charged_once(env, account, (5 * Decimal("0.60") + 12 * Decimal("2.20")) / M)
    assert row["provider"] == "sim-b"


@pytest.mark.parametrize("stream", [False, True])
def test_every_deployment_failing_is_one_clear_503_and_free(env: Routed, stream: bool) -> None:
    account, key = env.gw.create_account("1")
    response = chat(env, key, stream=stream, x_sim={"fault": "500"})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "upstream_error" and "HTTP 500" in error["message"]
    assert env.a.requests + env.b.requests == env.gw.settings.server.max_attempts == 3
    assert env.gw.balance(account) == Decimal(1) == env.gw.ledger_sum(account)
    (row,) = generations(env, account)
    assert row["status"] == "failed" and row["cost"] == 0
    usage = httpx.get(f"{env.gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
    assert Decimal(str(usage["available"])) == Decimal(1)  # the hold was released


def test_stream_failing_after_first_byte_is_not_retried_nor_charged(env: Routed) -> None:
    account, key = env.gw.create_account("1")
    env.a.faults("cut")
    response = chat(env, key, stream=True, x_sim={"completion_tokens": 20})
    events = sse_data(response.text)
    assert response.status_code == 200 and '"content":"lorem"' in response.text
    assert "[DONE]" not in events
    error = decode(events[-1])["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "upstream_error"
    assert (env.a.requests, env.b.requests) == (1, 0)  # the client already had bytes: no retry
    assert env.gw.balance(account) == Decimal(1) == env.gw.ledger_sum(account)
    (row,) = generations(env, account)
    assert row["status"] == "failed" and row["provider"] == "sim-a"


def test_rejected_request_is_not_retried(env: Routed) -> None:
    account, key = env.gw.create_account("1")
    response = chat(env, key, x_sim={"completion_tokens": -1})
    assert response.status_code == 400 and (env.a.requests, env.b.requests) == (1, 0)
    assert env.gw.balance(account) == Decimal(1)


@pytest.mark.parametrize("stream", [False, True])
def test_fallback_model_answers_at_its_own_price(env: Routed, stream: bool) -> None:
    account, key = env.gw.create_account("1")
    env.c.faults("500")
    response = chat(env, key, model="glm-4.6", stream=stream, stream_options={"include_usage": True} if stream else None)
    assert response.status_code == 200
    if stream:
        chunks = [decode(e) for e in sse_data(response.text)[:-1]]
        assert {c["model"] for c in chunks} == {"glm-4.5-air"}
        assert chunks[-1]["usage"]["cost"] == AIR_COST
    else:
        body = decode(response.content)
        assert body["model"] == "glm-4.5-air" and body["usage"]["cost"] == AIR_COST
    assert (env.c.requests, env.a.requests) == (1, 1)
    row = assert_charged_once(env, account, AIR_COST)  # the price of the model that answered
    assert row["model"] == "glm-4.5-air" and row["pricing"]["input"] == "0.10"


@pytest.mark.parametrize("stream", [False, True])
def test_messages_fall_back_from_anthropic_to_openai_protocol(env: Routed, stream: bool) -> None:
    account, key = env.gw.create_account("1")
    env.c.faults("500")
    with anthropic.Anthropic(base_url=env.gw.base_url, api_key=key, max_retries=0) as sdk:
        if stream:
            with sdk.messages.stream(model="claude-haiku-4-5", max_tokens=50, messages=HELLO) as events:
                message = events.get_final_message()
        else:
            message = sdk.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=HELLO)
    assert message.model == "glm-4.5-air" and message.content[0].text.startswith("lorem")
    assert env.c.stats()["last_request"]["max_tokens"] == 50  # the Messages body went to C as is
    assert env.a.stats()["last_request"]["messages"] == HELLO  # and its chat translation to A
    cost = (5 * Decimal("0.10") + 12 * Decimal("0.55")) / M
    assert message.usage.input_tokens == 5 and assert_charged_once(env, account, cost)["model"] == "glm-4.5-air"
