"""Spend caps: a key's lifetime and monthly caps and its tier's monthly cap stop calls exactly at the cap.

A call is admitted only if spent + held (calls in flight) + its own hold ≤ cap, so the
total charged can never pass the cap; the 402 error names the cap.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest
from redis import Redis

from runapi.money import NANOS_PER_USD, nanos_to_usd
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.limits import (
    account_in_tier,
    chat,
    chat_body,
    error_of,
    hold_nanos,
    key_id,
    tier,
)
from tests.support.postgres import temporary_database
from tests.support.redis_server import redis_server

TIERS = {"open": tier(), "capped": tier(monthly_cap="0.0005")}


@pytest.fixture(scope="module", params=["memory", "redis"])
def capped(request: pytest.FixtureRequest, sim_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningGateway]:
    """A gateway whose limits and holds live in memory, or in Redis (where the credit hold rides in the rate
    limiter's admission script, so a spend-cap refusal after it must give the hold back)."""
    env = {"RUNAPI_REDIS_URL": "redis://127.0.0.1:6379/0"} if request.param == "redis" else {}
    with run_gateway(sqlite_url(tmp_path_factory.mktemp("spend")), sim_url, tiers=TIERS, env=env) as running:
        yield running


def settled_available(gw: RunningGateway, key: str) -> tuple[Decimal, Decimal]:
    """(balance, available) once no hold is open: Redis hold closings are sent shortly after the call."""
    deadline = time.monotonic() + 3
    while True:
        usage = httpx.get(f"{gw.base_url}/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()
        balance, available = Decimal(str(usage["balance"])), Decimal(str(usage["available"]))
        if balance == available or time.monotonic() > deadline:
            return balance, available
        time.sleep(0.02)


def set_limits(gw: RunningGateway, account: str, **limits: object) -> None:
    gw.admin.patch(f"/admin/keys/{key_id(gw, account)}/limits", json=limits).raise_for_status()


def charged_nanos(gw: RunningGateway, account: str) -> int:
    rows = gw.admin.get("/admin/generations", params={"account_id": account}).raise_for_status().json()["data"]
    return sum(int(Decimal(str(r["cost"])) * NANOS_PER_USD) for r in rows)


BODY = chat_body(max_tokens=1000, completion_tokens=5)


def test_a_cap_of_exactly_one_hold_admits_one_call(capped: RunningGateway) -> None:
    hold = hold_nanos(capped, BODY)
    account, key = account_in_tier(capped, "open")
    set_limits(capped, account, spend_cap_usd=str(nanos_to_usd(hold)))
    assert chat(capped, key, BODY).status_code == 200
    refused = chat(capped, key, BODY)  # spent + this hold > cap
    assert refused.status_code == 402
    error = error_of(refused)
    assert error["type"] == "insufficient_quota" and error["code"] == "key_spend_cap_exceeded"
    assert "spend cap" in error["message"]
    balance, available = settled_available(capped, key)  # the refused call's credit hold is given back
    assert balance == Decimal(10) - Decimal(charged_nanos(capped, account)) / NANOS_PER_USD
    assert available == balance

    account, key = account_in_tier(capped, "open")
    set_limits(capped, account, spend_cap_usd=str(nanos_to_usd(hold - 1)))  # one nano-dollar short
    assert error_of(chat(capped, key, BODY))["code"] == "key_spend_cap_exceeded"
    assert charged_nanos(capped, account) == 0


async def test_holds_of_calls_in_flight_count_toward_the_cap(capped: RunningGateway) -> None:
    hold = hold_nanos(capped, chat_body(max_tokens=1000))
    cap = 2 * hold
    account, key = account_in_tier(capped, "open")
    set_limits(capped, account, spend_cap_usd=str(nanos_to_usd(cap)))
    body = chat_body(max_tokens=1000, completion_tokens=400)  # each call really costs ~0.4 of its hold
    slow = {**body, "stream": True, "x_sim": {"completion_tokens": 400, "chunk_delay_ms": 1}}
    async with httpx.AsyncClient(base_url=capped.base_url, headers={"authorization": f"Bearer {key}"},
                                 timeout=30) as client:
        async with client.stream("POST", "/v1/chat/completions", json=slow) as one, \
                client.stream("POST", "/v1/chat/completions", json=slow) as two:
            assert one.status_code == two.status_code == 200
            refused = await client.post("/v1/chat/completions", json=body)
            assert refused.status_code == 402 and error_of(refused)["code"] == "key_spend_cap_exceeded"
            await one.aread()
            await two.aread()
        # Now only what was really charged counts; keep calling until the cap stops the key.
        statuses = []
        for _ in range(10):
            response = await client.post("/v1/chat/completions", json=body)
            statuses.append(response.status_code)
            if response.status_code != 200:
                assert error_of(response)["code"] == "key_spend_cap_exceeded"
                break
    spent = charged_nanos(capped, account)
    assert statuses[-1] == 402 and statuses.count(200) >= 1
    assert spent <= cap < spent + hold  # stopped exactly: the next call's hold would pass the cap


def test_monthly_key_cap_names_itself(capped: RunningGateway) -> None:
    hold = hold_nanos(capped, BODY)
    account, key = account_in_tier(capped, "open")
    set_limits(capped, account, monthly_spend_cap_usd=str(nanos_to_usd(hold)), spend_cap_usd="100")
    assert chat(capped, key, BODY).status_code == 200
    assert error_of(chat(capped, key, BODY))["code"] == "key_monthly_spend_cap_exceeded"
    set_limits(capped, account, monthly_spend_cap_usd=None)  # lifted: the key may spend again
    assert chat(capped, key, BODY).status_code == 200


def test_the_tiers_monthly_cap_applies_to_every_key_of_the_account(capped: RunningGateway) -> None:
    account, key = account_in_tier(capped, "capped")  # $0.0005 a month
    body = chat_body(max_tokens=100, completion_tokens=90)
    assert hold_nanos(capped, body) < 500_000 // 4
    statuses = [chat(capped, key, body).status_code for _ in range(15)]
    assert 402 in statuses
    refused = chat(capped, key, body)
    assert error_of(refused)["code"] == "tier_monthly_spend_cap_exceeded"
    assert "usage-tier monthly spend cap" in error_of(refused)["message"]
    assert charged_nanos(capped, account) <= 500_000
    other = capped.admin.post(f"/admin/accounts/{account}/keys", json={}).raise_for_status().json()["key"]
    assert error_of(chat(capped, other, body))["code"] == "tier_monthly_spend_cap_exceeded"


def test_usage_reports_the_key_spend_and_the_month_spend(capped: RunningGateway) -> None:
    account, key = account_in_tier(capped, "open")
    assert chat(capped, key, BODY).status_code == 200
    usage = httpx.get(f"{capped.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
    spent = nanos_to_usd(charged_nanos(capped, account))
    assert Decimal(str(usage["key"]["spend"])) == spent == Decimal(str(usage["month_spend"]))
    assert usage["limits"]["name"] == "open"


def test_a_cap_counts_what_another_instance_charged_without_a_reload(sim_url: str) -> None:
    """Two instances on one PostgreSQL and Redis. B caches the key's spent total; A then charges the key.
    B's next admission learns of A's charge from the credit hold's Redis reply (`spent`), not from a
    re-read `spend_reload_interval` (30 s) later, so it refuses the call that would pass the cap."""
    with redis_server() as redis_, temporary_database() as database_url:
        env = {"RUNAPI_REDIS_URL": redis_.url}
        with run_gateway(database_url, sim_url, tiers=TIERS, env=env) as a, \
                run_gateway(database_url, sim_url, tiers=TIERS, env=env) as b:
            account, key = account_in_tier(a, "open")
            assert chat(a, key, BODY).status_code == 200
            cost, hold = charged_nanos(a, account), hold_nanos(a, BODY)
            set_limits(a, account, spend_cap_usd=str(nanos_to_usd(3 * cost + hold - 1)))  # 2 more calls, not 3
            a.wait_for_epoch()
            b.wait_for_epoch()  # B has dropped its caches for the change: what it loads next stays cached
            assert chat(b, key, BODY).status_code == 200  # B reads 1 call spent, then adds its own
            assert chat(a, key, BODY).status_code == 200  # 3 spent; B's cache still says 2
            client = Redis.from_url(redis_.url)
            deadline = time.monotonic() + 5
            try:  # A's charge reached Redis (hold closings are sent just after each commit)
                while int(client.hget(f"runapi:credit:{{{account}}}:state", "spent") or 0) < 3 * cost:
                    assert time.monotonic() < deadline, "the charges never reached Redis"
                    time.sleep(0.01)
            finally:
                client.close()
            refused = chat(b, key, BODY)
            assert refused.status_code == 402, refused.text
            assert error_of(refused)["code"] == "key_spend_cap_exceeded"
            assert charged_nanos(a, account) == 3 * cost
