"""Money under faults and concurrency: failed calls are free, holds settle, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import math
import time
from decimal import Decimal

import httpx

from runapi.simulator import prompt_tokens
from tests.support.gateway import RunningGateway
from tests.support.sse import decode, sse_data

MESSAGES = [{"role": "user", "content": "hello there"}]
M = Decimal(1_000_000)


def usage(gw: RunningGateway, key: str) -> dict:  # type: ignore[type-arg]
    return dict(decode(httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).content))


def generations(gw: RunningGateway, account: str) -> list[dict]:  # type: ignore[type-arg]
    return list(decode(gw.admin.get("/admin/generations", params={"account_id": account}).content)["data"])


def test_stream_cut_midway_is_not_charged_and_client_is_told(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
                                "x_sim": {"fault": "cut", "completion_tokens": 20}}, timeout=10)
    events = sse_data(response.text)
    assert response.status_code == 200 and "[DONE]" not in events
    error = decode(events[-1])["error"]
    assert error["type"] == "upstream_error" and error["message"]
    assert any('"content":"lorem"' in e for e in events)  # the client had received part of the answer
    assert gateway.balance(account) == Decimal(1) == gateway.ledger_sum(account)
    assert usage(gateway, key)["available"] == Decimal(1)
    (row,) = generations(gateway, account)
    assert row["status"] == "failed" and row["cost"] == 0


def test_mid_stream_error_event_is_not_charged(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
                                "x_sim": {"fault": "error_event"}}, timeout=10)
    assert "error" in decode(sse_data(response.text)[-1])
    assert gateway.balance(account) == Decimal(1)


def test_stream_without_upstream_usage_is_charged_by_estimate(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
                                "x_sim": {"honour_include_usage": False}}, timeout=10)
    assert sse_data(response.text)[-1] == "[DONE]"
    (row,) = generations(gateway, account)
    assert row["status"] == "succeeded" and row["estimated"] is True
    assert row["usage"]["completion_tokens"] == 12  # one token per streamed content part
    assert row["cost"] > 0 and gateway.balance(account) == Decimal(1) - row["cost"]


def test_client_disconnect_mid_stream_charges_what_was_generated(gateway: RunningGateway, sim: httpx.Client) -> None:
    account, key = gateway.create_account("1")
    body = {"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
            "x_sim": {"completion_tokens": 200, "chunk_delay_ms": 20}}
    received = 0
    with httpx.stream("POST", f"{gateway.base_url}/v1/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {key}"}) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                received += 1
                if received == 5:
                    break
    deadline = time.monotonic() + 5
    rows = generations(gateway, account)
    while not rows and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = generations(gateway, account)
    (row,) = rows
    assert row["status"] == "cancelled" and row["estimated"] is True
    assert 5 <= row["usage"]["completion_tokens"] < 200  # cancelled upstream: far fewer than 200
    prompt_bytes = len("hello there") + 12  # text plus the documented framing allowance per message
    assert row["usage"]["input_tokens"] == math.ceil(prompt_bytes / 3)
    expected = (row["usage"]["input_tokens"] * Decimal("0.10") + row["usage"]["completion_tokens"] * Decimal("0.55")) / M
    assert row["cost"] == expected
    assert gateway.balance(account) == Decimal(1) - expected == gateway.ledger_sum(account)


def test_client_leaving_between_two_slow_chunks_is_noticed_before_the_next(gateway: RunningGateway) -> None:
    """The disconnect is seen while the upstream is silent (not at the next write): the upstream call is
    cancelled and the stream settled well before the next chunk, 2 s later, would have arrived."""
    account, key = gateway.create_account("1")
    body = {"model": "glm-4.5-air", "messages": MESSAGES, "stream": True,
            "x_sim": {"completion_tokens": 2, "chunk_delay_ms": 2000, "latency_ms": 0}}
    with httpx.stream("POST", f"{gateway.base_url}/v1/chat/completions", json=body, timeout=10,
                      headers={"authorization": f"Bearer {key}"}) as response:
        for line in response.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                break  # the first token came 2 s in; the next is 2 s away
    left = time.monotonic()
    rows = generations(gateway, account)
    while not rows and time.monotonic() < left + 1.5:
        time.sleep(0.02)
        rows = generations(gateway, account)
    assert time.monotonic() - left < 1.5
    (row,) = rows
    assert row["status"] == "cancelled" and row["usage"]["completion_tokens"] == 1
    assert gateway.balance(account) == Decimal(1) - row["cost"] == gateway.ledger_sum(account)


def test_concurrent_calls_never_overdraw(gateway: RunningGateway) -> None:
    """50 concurrent calls, credit for 10 holds: some get 402, the balance never goes negative."""
    # Each hold: 23 prompt bytes bound the prompt at 23 tokens, + 1000 output tokens, at glm-4.5-air prices.
    hold = (23 * Decimal("0.10") + 1000 * Decimal("0.55")) / M
    credit = hold * 10 + Decimal("0.00001")
    account, key = gateway.create_account(credit)
    body = {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 1000, "x_sim": {"latency_ms": 300}}

    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30,
                                     headers={"authorization": f"Bearer {key}"}) as client:
            responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(50)))
        return [r.status_code for r in responses]

    statuses = asyncio.run(main())
    succeeded = statuses.count(200)
    assert set(statuses) <= {200, 402}
    assert statuses.count(402) >= 30 and 10 <= succeeded <= 20
    cost = (prompt_tokens(MESSAGES) * Decimal("0.10") + 12 * Decimal("0.55")) / M
    final = gateway.balance(account)
    assert final >= 0
    assert final == credit - succeeded * cost == gateway.ledger_sum(account)
    charges = [e for e in gateway.ledger(account) if e["kind"] == "charge"]
    assert len(charges) == succeeded == len({e["generation_id"] for e in charges})
