"""A balance never goes below zero while top-ups, tier changes, revocations and settlements race.

Regression test for issue 20.1: in single-process mode (SQLite, or PostgreSQL without Redis) a top-up
dropped the cached balance; the next hold began reading the ledger, a settlement committed meanwhile
found no cached balance and its deduction was dropped, and the older snapshot was then installed. The
account's ledger, summed in ID order, went negative. Here 24 callers each spend about their hold on an
account that can afford two calls at a time, while top-ups, tier pins and key revocations keep
invalidating every cache; on every backend the running sum of the ledger never drops below zero.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from tests.support.gateway import ADMIN_TOKEN, run_gateway
from tests.support.redis_server import redis_server
from tests.support.rollups import rollup_mismatches_of

CALLERS = 24
TOPUPS_PER_LOOP = 30
TOPUP = "0.0011"  # about one call: max_tokens 2000 × $0.55/1M output, and a few input tokens
BODY = {"model": "glm-4.5-air", "max_tokens": 2000, "messages": [{"role": "user", "content": "hi"}],
        "x_sim": {"completion_tokens": 2000}}


@pytest.fixture(params=["in-process", "redis"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "in-process":
        yield ""
    else:
        with redis_server() as server:
            yield server.url


class Outcomes:
    """{HTTP status: count} of the calls, and a wake-up for whoever waits for the next paid one."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.paid = asyncio.Condition()

    async def record(self, status: int) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        if status == 200:
            async with self.paid:
                self.paid.notify_all()

    async def next_paid(self, after: int) -> int:
        """Wait until more than `after` calls were paid; the count then."""
        async with self.paid:
            await self.paid.wait_for(lambda: self.counts.get(200, 0) > after)
        return self.counts[200]


async def _caller(client: httpx.AsyncClient, key: str, stop: asyncio.Event, outcomes: Outcomes) -> None:
    while not stop.is_set():
        response = await client.post("/v1/chat/completions", json=BODY, headers={"authorization": f"Bearer {key}"})
        await outcomes.record(response.status_code)
        if response.status_code not in (200, 402, 429):
            raise AssertionError(f"unexpected {response.status_code}: {response.text}")


async def _topups(admin: httpx.AsyncClient, account: str, outcomes: Outcomes) -> None:
    """Top up, then wait for a call to spend it: paced by the calls, whatever the machine's speed."""
    paid = 0
    for _ in range(TOPUPS_PER_LOOP):
        (await admin.post(f"/admin/accounts/{account}/credits", json={"amount_usd": TOPUP})).raise_for_status()
        paid = await outcomes.next_paid(paid)


async def _tier_changes(admin: httpx.AsyncClient, account: str, stop: asyncio.Event) -> None:
    tiers = ["tier-2", "tier-3", None]
    n = 0
    while not stop.is_set():
        (await admin.put(f"/admin/accounts/{account}/tier", json={"tier": tiers[n % 3]})).raise_for_status()
        n += 1


async def _revocations(admin: httpx.AsyncClient, account: str, stop: asyncio.Event) -> None:
    while not stop.is_set():  # keys the callers do not use: each revocation is announced to every cache
        key = (await admin.post(f"/admin/accounts/{account}/keys", json={"name": "spare"})).raise_for_status().json()
        (await admin.delete(f"/admin/keys/{key['id']}")).raise_for_status()


def _running_minimum(entries: list[dict[str, object]]) -> Decimal:
    total, lowest = Decimal(0), Decimal(0)
    for entry in sorted(entries, key=lambda e: int(str(e["id"]))):
        total += Decimal(str(entry["amount"]))
        lowest = min(lowest, total)
    return lowest


async def _race(base_url: str, account: str, key: str) -> dict[int, int]:
    """Run the callers until three loops of top-ups are done; {HTTP status: count} of the calls."""
    limits = httpx.Limits(max_connections=CALLERS + 8, keepalive_expiry=2.0)  # before the server drops it
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits))
        admin = await stack.enter_async_context(httpx.AsyncClient(
            base_url=base_url, timeout=60, limits=limits, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}))
        stop = asyncio.Event()
        outcomes = Outcomes()
        background = [asyncio.ensure_future(_caller(client, key, stop, outcomes)) for _ in range(CALLERS)]
        background += [asyncio.ensure_future(_tier_changes(admin, account, stop)),
                       asyncio.ensure_future(_revocations(admin, account, stop))]
        try:
            await asyncio.gather(*(_topups(admin, account, outcomes) for _ in range(3)))
        finally:
            stop.set()
            results = await asyncio.gather(*background, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        return outcomes.counts


def test_balance_never_negative_while_topups_tier_changes_and_revocations_race(
        database_url: str, redis_url: str, sim_url: str) -> None:
    env = {"RUNAPI_REDIS_URL": redis_url} if redis_url else {}
    with run_gateway(database_url, sim_url, env=env) as gateway:
        account, key = gateway.create_account("0.003")
        outcomes = asyncio.run(_race(gateway.base_url, account, key))
        entries = gateway.ledger(account)
        charges = [e for e in entries if e["kind"] == "charge"]
        assert outcomes.get(200, 0) == len(charges) >= TOPUPS_PER_LOOP  # the money was really spent
        assert outcomes.get(402, 0) > 0  # and callers were really refused for want of credit
        assert _running_minimum(entries) >= 0
        assert gateway.balance(account) == gateway.ledger_sum(account) >= 0
        assert rollup_mismatches_of(database_url) == []  # the reports' roll-ups, written with the rows
