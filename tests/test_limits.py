"""The rate limiter's contract, on both backends (in-process, and real Redis on 127.0.0.1:6379).

Time is a `ManualClock`, so window boundaries are exact. GCRA: a burst of N, then N per
minute; the N+1th call waits exactly 60/N seconds; no interval admits more than
N + (its length × N / 60).
"""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import AsyncIterator

import pytest
import redis

from runapi.limits import MemoryRateLimiter, Quota, RateLimiter, RedisRateLimiter
from runapi.limits.rates import RateLimitStatus, go_duration
from tests.support.clock import ManualClock

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RateLimiter, ManualClock]]:
    clock = ManualClock(1_800_000_000.0)
    if request.param == "memory":
        yield MemoryRateLimiter(clock), clock
        return
    prefix = f"runapi-test-{secrets.token_hex(4)}"
    backend = RedisRateLimiter.from_url(REDIS_URL, clock, prefix=prefix, lease_s=30)
    try:
        yield backend, clock
    finally:
        await backend.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


def rpm(n: int, scope: str = "acct:a") -> list[Quota]:
    return [Quota(scope, requests_per_minute=n)]


async def test_exactly_n_pass_and_the_next_waits_exactly_one_interval(limiter: tuple[RateLimiter, ManualClock]) -> None:
    backend, clock = limiter
    for i in range(5):
        decision = await backend.acquire("a", rpm(5), 1)
        assert decision.ticket is not None
        assert decision.status == RateLimitStatus(5, 4 - i, (i + 1) * 12_000, 0, 0, 0)
    refused = await backend.acquire("a", rpm(5), 1)
    assert refused.ticket is None and refused.denied == "requests" and refused.denied_scope == "acct:a"
    assert refused.retry_after_ms == 12_000  # 60 s / 5
    assert refused.status is not None and refused.status.remaining_requests == 0
    clock.advance(11.999)
    assert (await backend.acquire("a", rpm(5), 1)).ticket is None
    clock.advance(0.001)
    assert (await backend.acquire("a", rpm(5), 1)).ticket is not None
    assert (await backend.acquire("a", rpm(5), 1)).ticket is None


async def test_after_a_whole_window_n_pass_again(limiter: tuple[RateLimiter, ManualClock]) -> None:
    backend, clock = limiter
    for _ in range(2):
        admitted = [await backend.acquire("a", rpm(4), 1) for _ in range(5)]
        assert [d.ticket is not None for d in admitted] == [True, True, True, True, False]
        clock.advance(60)


async def test_no_burst_of_2n_at_a_window_edge(limiter: tuple[RateLimiter, ManualClock]) -> None:
    """A fixed window would let N through just before its edge and N more just after."""
    backend, clock = limiter
    clock.advance(59.9)
    assert all([(await backend.acquire("a", rpm(10), 1)).ticket for _ in range(10)])
    clock.advance(0.2)  # across where a fixed window would reset
    after_edge = [await backend.acquire("a", rpm(10), 1) for _ in range(10)]
    assert sum(d.ticket is not None for d in after_edge) == 0
    assert after_edge[0].retry_after_ms == 6_000 - 200


async def test_no_interval_admits_more_than_burst_plus_rate(limiter: tuple[RateLimiter, ManualClock]) -> None:
    """Greedy random traffic for five minutes: every interval of length d admits ≤ N + ⌊d·N/60⌋."""
    backend, clock = limiter
    rng = random.Random(4)
    n = 6
    admitted: list[float] = []
    for _ in range(400):
        clock.advance(rng.choice([0.0, 0.0, 0.5, 1.0, 3.0]))
        if (await backend.acquire("a", rpm(n), 1)).ticket is not None:
            admitted.append(clock.now)
    assert len(admitted) > 5 * n  # the limiter did let the sustained rate through
    for i, first in enumerate(admitted):
        for j in range(i, len(admitted)):
            span = admitted[j] - first
            assert j - i + 1 <= n + math.floor(span * n / 60 + 1e-9), (first, admitted[j])


async def test_tokens_are_charged_from_the_estimate_and_corrected_by_real_usage(
        limiter: tuple[RateLimiter, ManualClock]) -> None:
    backend, _ = limiter
    tpm = [Quota("acct:a", tokens_per_minute=1000)]
    first = await backend.acquire("a", tpm, 400)
    second = await backend.acquire("a", tpm, 400)
    assert first.ticket and second.ticket and second.status and second.status.remaining_tokens == 200
    refused = await backend.acquire("a", tpm, 400)
    assert refused.denied == "tokens" and refused.retry_after_ms == 12_000  # 200 tokens at 1000/min
    backend.release(first.ticket, 100)  # the call really used 100 tokens, not 400
    await backend.flush()
    third = await backend.acquire("a", tpm, 400)
    assert third.ticket is not None and third.status and third.status.remaining_tokens == 100
    backend.release(second.ticket, 700)  # more than estimated: the bucket owes 300 more
    await backend.flush()
    refused = await backend.acquire("a", tpm, 1)
    assert refused.denied == "tokens" and refused.status and refused.status.remaining_tokens == 0


async def test_a_call_larger_than_the_bucket_needs_an_empty_one(limiter: tuple[RateLimiter, ManualClock]) -> None:
    backend, clock = limiter
    tpm = [Quota("acct:a", tokens_per_minute=1000)]
    assert (await backend.acquire("a", tpm, 10)).ticket is not None
    assert (await backend.acquire("a", tpm, 5000)).retry_after_ms == 600  # until the 10 tokens drained
    clock.advance(0.6)
    big = await backend.acquire("a", tpm, 5000)
    assert big.ticket is not None and big.ticket.charges == (1000,)


async def test_concurrency_slots_are_held_until_release(limiter: tuple[RateLimiter, ManualClock]) -> None:
    backend, _ = limiter
    quota = [Quota("acct:a", concurrent_requests=2)]
    one, two = [await backend.acquire("a", quota, 1) for _ in range(2)]
    refused = await backend.acquire("a", quota, 1)
    assert refused.denied == "concurrency" and refused.retry_after_ms == 1000
    assert one.ticket is not None and two.ticket is not None
    backend.release(one.ticket, 1)
    await backend.flush()
    assert (await backend.acquire("a", quota, 1)).ticket is not None
    assert (await backend.acquire("a", quota, 1)).denied == "concurrency"


async def test_many_releases_at_once_free_every_slot_and_correct_every_bucket(
        limiter: tuple[RateLimiter, ManualClock]) -> None:
    """170 calls of two accounts, two scopes each, released together (on Redis: one batch, more than one
    script call's worth for account a): every slot is freed and every tokens bucket corrected."""
    backend, _ = limiter

    def quotas(account: str) -> list[Quota]:
        return [Quota(f"acct:{account}", tokens_per_minute=100_000, concurrent_requests=121),
                Quota(f"key:{account}", tokens_per_minute=100_000, concurrent_requests=121)]
    tickets = []
    for account, calls in (("a", 120), ("b", 50)):
        for _ in range(calls):
            decision = await backend.acquire(account, quotas(account), 700)  # 84,000 tokens charged to a
            assert decision.ticket is not None
            tickets.append(decision.ticket)
    assert (await backend.acquire("a", quotas("a"), 1)).ticket is not None  # the 121st slot
    assert (await backend.acquire("a", quotas("a"), 1)).denied == "concurrency"
    for ticket in tickets:
        backend.release(ticket, 100)  # real usage: 12,000 tokens for a's 120 calls
    await backend.flush()
    for account in ("a", "b"):  # 85,000 more tokens fit only if every estimate was corrected
        assert (await backend.acquire(account, quotas(account), 85_000)).ticket is not None
    for _ in range(119):  # and the other 119 of the 120 released slots are free
        assert (await backend.acquire("a", quotas("a"), 1)).ticket is not None
    assert (await backend.acquire("a", quotas("a"), 1)).denied == "concurrency"


async def test_all_scopes_are_charged_or_none(limiter: tuple[RateLimiter, ManualClock]) -> None:
    """A key's own narrower limit refuses: the account's tier bucket is left untouched."""
    backend, _ = limiter
    quotas = [Quota("acct:a", requests_per_minute=10, tokens_per_minute=10_000, concurrent_requests=5),
              Quota("key:k", requests_per_minute=2)]
    assert all([(await backend.acquire("a", quotas, 100)).ticket for _ in range(2)])
    refused = await backend.acquire("a", quotas, 100)
    assert refused.denied == "requests" and refused.denied_scope == "key:k"
    assert refused.status is not None and refused.status.limit_requests == 2
    account_only = await backend.acquire("a", quotas[:1], 100)
    assert account_only.status == RateLimitStatus(10, 7, 18_000, 10_000, 9_700, 1_800)


async def test_limits_raised_mid_window_apply_at_once(limiter: tuple[RateLimiter, ManualClock]) -> None:
    backend, _ = limiter
    assert all([(await backend.acquire("a", rpm(2), 1)).ticket for _ in range(2)])
    assert (await backend.acquire("a", rpm(2), 1)).ticket is None
    assert (await backend.acquire("a", rpm(5), 1)).ticket is not None  # promoted: more room now


async def test_redis_concurrency_lease_frees_slots_of_a_crashed_instance() -> None:
    clock = ManualClock(1_800_000_000.0)
    prefix = f"runapi-test-{secrets.token_hex(4)}"
    backend = RedisRateLimiter.from_url(REDIS_URL, clock, prefix=prefix, lease_s=30)
    try:
        quota = [Quota("acct:a", concurrent_requests=1)]
        assert (await backend.acquire("a", quota, 1)).ticket is not None  # never released
        assert (await backend.acquire("a", quota, 1)).denied == "concurrency"
        clock.advance(30.001)
        assert (await backend.acquire("a", quota, 1)).ticket is not None
    finally:
        await backend.close()


async def test_backends_agree_on_random_traffic() -> None:
    clock = ManualClock(1_800_000_000.0)
    memory = MemoryRateLimiter(clock)
    remote = RedisRateLimiter.from_url(REDIS_URL, clock, prefix=f"runapi-test-{secrets.token_hex(4)}")
    rng = random.Random(7)
    quotas = [Quota("acct:a", 20, 5_000, 3), Quota("key:k", 8, 0, 0)]
    open_tickets: list[tuple[object, object]] = []
    try:
        for _ in range(300):
            clock.advance(rng.choice([0, 0.05, 0.5, 2]))
            if open_tickets and rng.random() < 0.4:
                mine, theirs = open_tickets.pop(rng.randrange(len(open_tickets)))
                used = rng.randrange(0, 900)
                memory.release(mine, used)  # type: ignore[arg-type]
                remote.release(theirs, used)  # type: ignore[arg-type]
                await remote.flush()
                continue
            tokens = rng.randrange(1, 800)
            a, b = await memory.acquire("a", quotas, tokens), await remote.acquire("a", quotas, tokens)
            assert (a.scopes, a.denied, a.denied_scope, a.retry_after_ms) == \
                (b.scopes, b.denied, b.denied_scope, b.retry_after_ms)
            if a.ticket and b.ticket:
                open_tickets.append((a.ticket, b.ticket))
    finally:
        await remote.close()


@pytest.mark.parametrize(("ms", "text"), [(0, "0ms"), (20, "20ms"), (999, "999ms"), (1000, "1s"), (1500, "1.5s"),
                                          (12_345, "12.345s"), (60_000, "1m0s"), (360_000, "6m0s"),
                                          (61_500, "1m1.5s")])
def test_reset_durations_are_written_like_openai(ms: int, text: str) -> None:
    assert go_duration(ms) == text
