"""Issue 20.2: a burst of the top tier's concurrency, spread over two instances sharing PostgreSQL and
Redis, gets no 503 while Redis is up (redis-py's pool running dry is not a Redis outage)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from redis import exceptions as redis_errors

from runapi.accounting.credit_redis import RedisCreditGuard
from runapi.errors import InsufficientCredit
from runapi.limits.tiers import DEFAULT_TIERS
from runapi.storage import Ledger, create_engine, upgrade
from runapi.storage.redis_client import PoolWaitTimeout, redis_client
from tests.support.instances import ServeProcess, admin_client, serve_env, write_config
from tests.support.postgres import temporary_database
from tests.support.redis_server import RedisServer, redis_server

TOP_TIER = max(DEFAULT_TIERS, key=lambda name: DEFAULT_TIERS[name].concurrent_requests)
CONCURRENCY = DEFAULT_TIERS[TOP_TIER].concurrent_requests


@pytest.fixture(scope="module")
def two_instances(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    directory = tmp_path_factory.mktemp("redis-pool")
    with redis_server() as redis, temporary_database() as database_url:
        upgrade(database_url)
        env = serve_env(database_url, redis.url, write_config(directory / "runapi.toml", sim_url))
        instances = [ServeProcess(env, directory / f"serve-{n}.log") for n in range(2)]
        try:
            for instance in instances:
                instance.wait_ready()
            yield [instance.base_url for instance in instances]
        finally:
            for instance in instances:
                instance.stop()


async def burst(urls: list[str], key: str, calls: int) -> list[tuple[int, str]]:
    """`calls` chat calls at once, round-robin over `urls`, each on its own connection."""
    body = {"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5,
            "x_sim": {"latency_ms": 300}}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120),
                                     headers={"authorization": f"Bearer {key}"}) as session:
        async def call(url: str) -> tuple[int, str]:
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                return response.status, await response.text()

        return list(await asyncio.gather(*(call(url) for url, _ in zip(itertools.cycle(urls), range(calls)))))


def test_a_burst_of_the_top_tiers_concurrency_gets_no_503_while_redis_is_up(two_instances: list[str]) -> None:
    with admin_client(two_instances[0]) as admin:
        account = admin.post("/admin/accounts", json={"name": f"burst-{time.time_ns()}", "tier": TOP_TIER})
        account_id = account.raise_for_status().json()["id"]
        admin.post(f"/admin/accounts/{account_id}/credits", json={"amount_usd": "100"}).raise_for_status()
        key = admin.post(f"/admin/accounts/{account_id}/keys", json={}).raise_for_status().json()["key"]
        # A cold account: neither instance has loaded its balance into Redis yet.
        results = asyncio.run(burst(two_instances, key, CONCURRENCY))
        statuses = [status for status, _ in results]
        assert statuses.count(200) == len(statuses), {s: statuses.count(s) for s in set(statuses)}
        charges = [e for e in admin.get(f"/admin/accounts/{account_id}/ledger?limit=2000").json()["data"]
                   if e["kind"] == "charge"]
        assert len(charges) == CONCURRENCY


@pytest.fixture()
def private_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def test_callers_wait_for_a_busy_pool_instead_of_failing(private_redis: RedisServer) -> None:
    client = redis_client(private_redis.url, max_connections=4, wait_s=5.0)
    try:
        replies = await asyncio.gather(*(client.incr("n") for _ in range(500)))
        assert sorted(replies) == list(range(1, 501))
        assert len(client.connection_pool._available_connections) <= 4
    finally:
        await client.aclose()


async def test_a_pool_that_never_frees_a_connection_is_an_outage(private_redis: RedisServer) -> None:
    client = redis_client(private_redis.url, max_connections=2, wait_s=0.3)
    try:
        blocked = [asyncio.ensure_future(client.blpop(["never"], timeout=1)) for _ in range(2)]
        await asyncio.sleep(0)  # both take their connection first
        with pytest.raises(PoolWaitTimeout) as refused:
            await client.get("x")
        assert isinstance(refused.value, redis_errors.ConnectionError)  # the edge answers it as a 503
        assert await asyncio.gather(*blocked) == [None, None]
        assert await client.get("x") is None and not client.connection_pool._waiters
    finally:
        await client.aclose()


async def test_concurrent_first_holds_start_one_sync_loop_and_close_leaves_no_connection(
        private_redis: RedisServer, tmp_path: Path) -> None:
    """The leak behind `ResourceWarning: unclosed <socket ...>` to Redis at the end of a run: concurrent
    first calls each started the credit guard's sync loop; the extra loops, unknown to `close()`,
    opened new connections after the pool was closed."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'runapi.db'}"
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    guard = RedisCreditGuard(Ledger(engine), redis_client(private_redis.url))
    pool = guard._redis.connection_pool
    try:
        outcomes = await asyncio.gather(*(guard.reserve("no-such-account", 1) for _ in range(20)),
                                        return_exceptions=True)
        assert all(isinstance(o, InsufficientCredit) for o in outcomes), outcomes
        assert [t.get_name() for t in asyncio.all_tasks()].count("credit-sync") == 1
        await guard.close()
        assert [t.get_name() for t in asyncio.all_tasks()].count("credit-sync") == 0
        connections = [*pool._available_connections, *pool._in_use_connections]
        assert connections and not any(c.is_connected for c in connections)
    finally:
        await engine.dispose()
