"""Admissions of one event-loop turn go to Redis as one pipeline (`storage.AutoPipeline`): each caller
gets its own decision or its own error, scripts Redis forgot run again only where they failed, a
cancelled caller leaves the others alone, and an outage fails every caller fast."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis import exceptions as redis_errors

from runapi.limits import Quota, RedisRateLimiter
from runapi.limits.redis_limiter import ACQUIRE
from runapi.storage import Rider
from runapi.storage.redis_client import PoolWaitTimeout, redis_client
from tests.support.clock import ManualClock
from tests.support.redis_server import RedisServer, redis_server
from tests.support.tcp_proxy import tcp_proxy

COUNT = "return redis.call('INCR', KEYS[1])"  # a rider that shows how often it ran


@pytest.fixture(scope="module")
def private_redis() -> Iterator[RedisServer]:
    """Its own server: these tests empty its script cache."""
    with redis_server() as server:
        yield server


@pytest.fixture()
async def limiter(private_redis: RedisServer) -> AsyncIterator[RedisRateLimiter]:
    backend = RedisRateLimiter(redis_client(private_redis.url), ManualClock(1_800_000_000.0),
                               prefix=f"t-{secrets.token_hex(4)}", lease_s=30)
    try:
        yield backend
    finally:
        await backend.close()


def connections(limiter: RedisRateLimiter) -> int:
    pool = limiter._redis.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


def counter(limiter: RedisRateLimiter, group: str) -> Rider:
    return Rider(COUNT, [f"{limiter._prefix}:n:{{{group}}}"], [])


def ran(rider: Rider) -> int:
    """The count a `counter` rider returned (its reply is an integer, not a list)."""
    reply: Any = rider.reply
    return int(reply)


async def test_acquires_of_one_turn_are_one_batch_and_each_gets_its_own_decision(limiter: RedisRateLimiter) -> None:
    three = [Quota("acct:a", requests_per_minute=3)]
    ten = [Quota("acct:b", requests_per_minute=10), Quota("key:b", concurrent_requests=2)]
    decisions = await asyncio.gather(*(limiter.acquire("a", three, 1) for _ in range(5)),
                                     *(limiter.acquire("b", ten, 1) for _ in range(3)))
    assert connections(limiter) == 1  # one checkout, one write: not one connection per concurrent call
    a, b = decisions[:5], decisions[5:]
    assert [d.ticket is not None for d in a] == [True, True, True, False, False]
    assert {d.denied for d in a[3:]} == {"requests"} and all(d.retry_after_ms == 20_000 for d in a[3:])
    assert [d.ticket is not None for d in b] == [True, True, False]
    assert b[2].denied == "concurrency" and b[2].denied_scope == "key:b"
    assert len({d.ticket.id for d in decisions if d.ticket}) == 5


async def test_a_script_error_reaches_only_its_caller(limiter: RedisRateLimiter) -> None:
    unlimited = [Quota("acct:a")]
    broken = Rider("error('broken rider')", [], [])
    outcomes = await asyncio.gather(limiter.acquire("a", unlimited, 1, counter(limiter, "a")),
                                    limiter.acquire("a", unlimited, 1, broken),
                                    limiter.acquire("a", unlimited, 1, counter(limiter, "a")),
                                    return_exceptions=True)
    assert connections(limiter) == 1
    assert isinstance(outcomes[1], redis_errors.ResponseError) and "broken rider" in str(outcomes[1])
    assert all(not isinstance(o, BaseException) and o.ticket is not None for o in (outcomes[0], outcomes[2]))


async def test_scripts_redis_forgot_run_again_only_where_they_failed(limiter: RedisRateLimiter) -> None:
    """A batch mixing a script Redis knows with one it forgot (SCRIPT FLUSH, a restart): the calls
    that failed with NOSCRIPT run once more, the others are not sent again (each admission and each
    rider counted once)."""
    four = [Quota("acct:a", requests_per_minute=4)]
    riders = [counter(limiter, "a") for _ in range(2)]
    await limiter._redis.script_flush()
    await limiter._redis.script_load(ACQUIRE)  # the plain admission is known, the one with a rider is not
    decisions = await asyncio.gather(limiter.acquire("a", four, 1), limiter.acquire("a", four, 1, riders[0]),
                                     limiter.acquire("a", four, 1), limiter.acquire("a", four, 1, riders[1]))
    assert all(d.ticket is not None for d in decisions)
    assert sorted(ran(r) for r in riders) == [1, 2]
    assert (await limiter.acquire("a", four, 1)).denied == "requests"  # exactly four were charged


async def test_a_script_flush_mid_traffic_runs_every_call_exactly_once(limiter: RedisRateLimiter,
                                                                       private_redis: RedisServer) -> None:
    unlimited = [Quota("acct:a")]
    calls, flush_after = 400, 100
    done = 0
    halfway = asyncio.Event()
    flusher = redis_client(private_redis.url)

    counts: list[int] = []

    async def caller() -> None:
        nonlocal done
        while done < calls:
            done += 1
            rider = counter(limiter, "a")
            decision = await limiter.acquire("a", unlimited, 1, rider)
            assert decision.ticket is not None and rider.reply is not None
            counts.append(ran(rider))
            if done >= flush_after:
                halfway.set()

    async def flush() -> None:
        await halfway.wait()
        await flusher.script_flush()

    async def noscript_replies() -> int:
        return int((await flusher.info("commandstats"))["cmdstat_evalsha"]["failed_calls"])

    try:
        await limiter.acquire("a", unlimited, 1, counter(limiter, "b"))  # the scripts are loaded before
        before = await noscript_replies()
        await asyncio.gather(*(caller() for _ in range(16)), flush())
        assert await noscript_replies() > before  # the flush hit calls in flight
    finally:
        await flusher.aclose()
    assert sorted(counts) == list(range(1, calls + 1))  # every rider ran once: no count skipped, none repeated


async def test_a_caller_cancelled_before_its_batch_is_sent_is_left_out(limiter: RedisRateLimiter) -> None:
    two = [Quota("acct:a", requests_per_minute=2)]
    calls = [asyncio.ensure_future(limiter.acquire("a", two, 1)) for _ in range(3)]
    await asyncio.sleep(0)  # one turn: all three queued, the batch not sent yet
    calls[0].cancel()
    first, second = await asyncio.gather(*calls[1:])
    assert calls[0].cancelled() and first.ticket is not None and second.ticket is not None  # the third got its turn


async def test_an_outage_fails_every_caller_of_the_batch_fast(private_redis: RedisServer) -> None:
    with tcp_proxy(private_redis.port) as proxy:
        limiter = RedisRateLimiter.from_url(f"redis://127.0.0.1:{proxy.port}/0", prefix=f"t-{secrets.token_hex(4)}")
        try:
            unlimited = [Quota("acct:a")]
            assert (await limiter.acquire("a", unlimited, 1)).ticket is not None  # a pooled connection
            proxy.cut()
            started = time.monotonic()
            outcomes = await asyncio.gather(*(limiter.acquire("a", unlimited, 1) for _ in range(8)),
                                            return_exceptions=True)
            assert all(isinstance(o, redis_errors.ConnectionError) for o in outcomes), outcomes
            assert time.monotonic() - started < 2.5
            proxy.restore()
            assert (await limiter.acquire("a", unlimited, 1)).ticket is not None
        finally:
            await limiter.close()


async def test_a_pool_that_never_frees_a_connection_fails_the_batch(private_redis: RedisServer) -> None:
    client = redis_client(private_redis.url, max_connections=1, wait_s=0.3)
    limiter = RedisRateLimiter(client, prefix=f"t-{secrets.token_hex(4)}")
    try:
        blocked = asyncio.ensure_future(client.blpop(["never"], timeout=1))
        await asyncio.sleep(0)  # it takes the only connection first
        outcomes = await asyncio.gather(*(limiter.acquire("a", [Quota("acct:a")], 1) for _ in range(3)),
                                        return_exceptions=True)
        assert all(isinstance(o, PoolWaitTimeout) for o in outcomes), outcomes
        assert await blocked is None
        assert (await limiter.acquire("a", [Quota("acct:a")], 1)).ticket is not None
    finally:
        await limiter.close()
