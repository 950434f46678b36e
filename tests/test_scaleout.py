"""Several gateways as one: two `runapi serve` instances plus one with `--workers 2`, sharing PostgreSQL
and a private Redis, in front of the simulator. One account, load spread across all of them."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from runapi.simulator import prompt_tokens
from runapi.storage import upgrade
from tests.support.gateway import ADMIN_TOKEN
from tests.support.instances import ServeProcess, serve_env, write_config
from tests.support.postgres import temporary_database
from tests.support.redis_server import RedisServer, redis_server
from tests.support.sse import decode

MESSAGES = [{"role": "user", "content": "hello there"}]
M = Decimal(1_000_000)
RPM = 9  # the `scaleout-rpm` tier's global requests per minute
# A call's hold: 23 prompt bytes bound the prompt at 23 tokens, + 1000 output tokens, at glm-4.5-air prices.
HOLD = (23 * Decimal("0.10") + 1000 * Decimal("0.55")) / M
COST = (prompt_tokens(MESSAGES) * Decimal("0.10") + 12 * Decimal("0.55")) / M  # what the simulator's answer costs

TIERS = f"""
[tiers.scaleout-rpm]
requests_per_minute = {RPM}
tokens_per_minute = 10000000
concurrent_requests = 1000
monthly_spend_cap_usd = 1000
qualifying_topup_usd = 1000000000
"""


class Cluster:
    def __init__(self, instances: list[ServeProcess], redis: RedisServer) -> None:
        self.instances = instances
        self.redis = redis
        self.urls = [i.base_url for i in instances]
        self.admin = httpx.Client(base_url=self.urls[0], headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
                                  timeout=30)

    def create_account(self, credit: Decimal, tier: str = "tier-5") -> tuple[str, str]:
        account = self.admin.post("/admin/accounts", json={"name": f"acct-{time.time_ns()}", "tier": tier})
        account_id = account.raise_for_status().json()["id"]
        self.admin.post(f"/admin/accounts/{account_id}/credits", json={"amount_usd": str(credit)}).raise_for_status()
        key = self.admin.post(f"/admin/accounts/{account_id}/keys", json={}).raise_for_status().json()
        return account_id, key["key"]

    def balance(self, account_id: str) -> Decimal:
        return Decimal(str(decode(self.admin.get(f"/admin/accounts/{account_id}").content)["balance"]))

    def ledger(self, account_id: str) -> list[dict[str, Any]]:
        return list(decode(self.admin.get(f"/admin/accounts/{account_id}/ledger").content)["data"])

    def check_books(self, account_id: str, succeeded: int, credit: Decimal) -> None:
        """Every answered call charged exactly once, at its exact cost; Σ ledger = balance ≥ 0."""
        entries = self.ledger(account_id)
        charges = [e for e in entries if e["kind"] == "charge"]
        assert len(charges) == succeeded == len({e["generation_id"] for e in charges})
        assert all(-e["amount"] == COST for e in charges)
        final = self.balance(account_id)
        assert final == sum(Decimal(str(e["amount"])) for e in entries) == credit - succeeded * COST >= 0


@pytest.fixture(scope="module")
def cluster(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("scaleout")
    with redis_server() as redis, temporary_database() as database_url:
        upgrade(database_url)
        env = serve_env(database_url, redis.url, write_config(directory / "runapi.toml", sim_url, TIERS))
        instances = [ServeProcess(env, directory / f"serve-{n}.log", workers) for n, workers in enumerate((1, 1, 2))]
        try:
            for instance in instances:
                instance.wait_ready()
            running = Cluster(instances, redis)
            yield running
            running.admin.close()
        finally:
            for instance in instances:
                instance.stop()


async def spread(urls: list[str], key: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """Send every body at once, round-robin over `urls`, each on its own connection."""
    headers = {"authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, headers=headers, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(f"{url}/v1/chat/completions", json=body)
                                           for url, body in zip(itertools.cycle(urls), bodies))))


def test_instances_share_one_balance(cluster: Cluster) -> None:
    credit = HOLD * 10 + Decimal("0.00001")  # room for ten holds at once
    account, key = cluster.create_account(credit)
    body = {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 1000, "x_sim": {"latency_ms": 400}}
    responses = asyncio.run(spread(cluster.urls, key, [body] * 60))
    statuses = [r.status_code for r in responses]
    succeeded = statuses.count(200)
    assert set(statuses) <= {200, 402}, [r.text for r in responses if r.status_code not in (200, 402)]
    assert 10 <= succeeded <= 20 and statuses.count(402) >= 40
    cluster.check_books(account, succeeded, credit)


def test_a_global_rate_limit_admits_exactly_n_across_instances(cluster: Cluster) -> None:
    account, key = cluster.create_account(Decimal(1), tier="scaleout-rpm")
    body = {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 20}
    responses = asyncio.run(spread(cluster.urls, key, [body] * (RPM * 3)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == RPM and statuses.count(429) == 2 * RPM, statuses
    cluster.check_books(account, RPM, Decimal(1))


async def probe(client: httpx.AsyncClient, url: str, key: str) -> tuple[float, int]:
    """(when the answer arrived, its status) for a call with `key` and an empty body: 400 if the key
    is accepted, 401 if refused. No upstream call, no charge."""
    response = await client.post(f"{url}/v1/chat/completions", json={}, headers={"authorization": f"Bearer {key}"})
    return time.monotonic(), response.status_code


def test_a_revoked_key_is_refused_everywhere_within_a_second(cluster: Cluster) -> None:
    account, key = cluster.create_account(Decimal(1))
    (key_id,) = [k["id"] for k in cluster.admin.get(f"/admin/accounts/{account}/keys").json()["data"]]

    async def main() -> tuple[float, list[tuple[float, int]]]:
        # Fresh connections, several at once, so every worker of the 2-worker instance answers some.
        async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            warm = await asyncio.gather(*(probe(client, url, key) for url in cluster.urls for _ in range(8)))
            assert {status for _, status in warm} == {400}  # every cache now holds the key
            await asyncio.to_thread(lambda: cluster.admin.delete(f"/admin/keys/{key_id}").raise_for_status())
            revoked = time.monotonic()
            seen: list[tuple[float, int]] = []
            refused_rounds = 0
            while refused_rounds < 3 and time.monotonic() - revoked < 3:
                round_ = await asyncio.gather(*(probe(client, url, key) for url in cluster.urls for _ in range(6)))
                seen += round_
                refused_rounds = refused_rounds + 1 if all(status == 401 for _, status in round_) else 0
                await asyncio.sleep(0.02)
            return revoked, seen

    revoked, seen = asyncio.run(main())
    assert {status for _, status in seen} <= {400, 401} and seen[-1][1] == 401
    accepted_after = [at - revoked for at, status in seen if status == 400]
    assert not accepted_after or max(accepted_after) < 1.0, f"still accepted {max(accepted_after):.3f}s after"


def test_redis_restarted_during_load(cluster: Cluster) -> None:
    """Policy: while Redis is down new calls get 503 (fail closed), calls in flight finish and are
    charged; once Redis is back (empty), calls are admitted again and the books balance."""
    credit = Decimal(1)
    account, key = cluster.create_account(credit)
    body = {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 20, "x_sim": {"latency_ms": 150}}
    responses: list[httpx.Response] = []

    async def load(until: float, url: str) -> None:
        async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {key}"},
                                     limits=httpx.Limits(max_keepalive_connections=0)) as client:
            while time.monotonic() < until:
                response = await client.post(f"{url}/v1/chat/completions", json=body)
                responses.append(response)
                if response.status_code != 200:
                    await asyncio.sleep(0.05)

    async def main() -> None:
        until = time.monotonic() + 3.8
        workers = [asyncio.create_task(load(until, url)) for url in cluster.urls * 2]
        await asyncio.sleep(0.8)
        await asyncio.to_thread(cluster.redis.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(cluster.redis.start)
        await asyncio.gather(*workers)

    asyncio.run(main())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, [r.text for r in responses if r.status_code not in (200, 503)]
    unavailable = [decode(r.content)["error"] for r in responses if r.status_code == 503]
    assert unavailable and all(e["code"] == "service_unavailable" and "Redis" in e["message"] for e in unavailable)
    assert statuses[-6:].count(200) >= 1 and statuses.index(503) < max(i for i, s in enumerate(statuses) if s == 200)
    cluster.check_books(account, statuses.count(200), credit)
